"""The junction check's crop CNN in PyTorch (the check itself is :class:`~.junction_check.JunctionCheckBase`'s)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from spine_kp.inference.junction_check import JunctionCheckBase
from spine_kp.junction.config import JunctionConfig
from spine_kp.junction.model import JunctionNet
from spine_kp.schema import Schema


class JunctionCheck(JunctionCheckBase):
    """A trained :class:`~spine_kp.junction.model.JunctionNet` with its config.

    Args:
        model: the crop CNN (eval mode is set here).
        config: its config.
        schema: landmark set.
    """

    def __init__(self, model: JunctionNet, config: JunctionConfig, schema: Schema) -> None:
        super().__init__(config, schema)
        self.model = model.eval()

    @classmethod
    def from_weights(cls, config: JunctionConfig, schema: Schema, state_dict: Mapping[str, Any]) -> JunctionCheck:
        """Rebuild from the config (a model card's ``junction`` section) and the CNN's weights.

        Raises:
            KeyError, TypeError, RuntimeError, ValueError: the weights do not fit the config (the caller names the
                file).
        """
        model = JunctionNet(config.channels, config.dropout)
        model.load_state_dict(state_dict)
        return cls(model, config, schema)

    @torch.no_grad()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The CNN on (N, 1, S, S) crops, on the device its weights are on (the predictor's)."""
        device = next(self.model.parameters()).device
        return self.model(torch.from_numpy(batch).to(device)).float().cpu().numpy()


__all__ = ["JunctionCheck"]
