"""Untrained landmark channels stay out of level-order decoding
(``spine_kp.inference.network_outputs.decode_trained``)."""

from __future__ import annotations

import numpy as np
import torch

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.inference.network_outputs import decode_trained

CODEC = HeatmapCodec((64, 64), stride=1, sigma=1.5)


def _peak(x: float, y: float, value: float = 1.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return value * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))


def _maps() -> torch.Tensor:
    """Four landmarks down a spine at y = 10, 22, 34, 46, each channel with a weaker response one level lower (a
    neighbour that looks alike); channel 0 is stale (never trained) and fires confidently on landmark 1."""
    levels = [10, 22, 34, 46, 58]
    maps = [_peak(32, levels[1], 0.9)]  # the untrained channel
    maps += [_peak(32, levels[k]) + _peak(32, levels[k + 1], 0.6) for k in (1, 2, 3)]
    return torch.stack(maps)[None]  # (1, 4, 64, 64)


def test_untrained_channels_do_not_move_trained_landmarks() -> None:
    trained = np.array([False, True, True, True])
    coords, peaks = decode_trained(_maps(), CODEC, LevelOrderConfig(), trained)
    np.testing.assert_allclose(coords[0, 1:, 1].numpy(), [22, 34, 46], atol=0.6)
    assert peaks[0, 0] == 0 and torch.all(coords[0, 0] == 0)
    assert torch.all(peaks[0, 1:] > 0.8)


def test_a_stale_channel_in_the_chain_would_pull_its_neighbour_off() -> None:
    """Why the mask matters: decoded with all channels, the chain below the stale channel shifts by one level."""
    coords, _ = decode_trained(_maps(), CODEC, LevelOrderConfig(), np.ones(4, dtype=bool))
    np.testing.assert_allclose(coords[0, 1:, 1].numpy(), [34, 46, 58], atol=0.6)
