"""``spine-kp card MODEL``: print a trained model's card (everything a runtime reads besides the weights) as YAML.

``MODEL`` is a checkpoint (read as data, weights-only: :mod:`spine_kp.torch_files`), a training run folder (its
``checkpoints/best.ckpt``), a fold ensemble file (one card per member) or an ONNX export (its metadata, checked against
the graph; needs the onnx package, not torch). A checkpoint and its export print the same sections.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .ckpt file, a training run folder, a fold ensemble file or a .onnx export")


def model_card(path: str | Path) -> dict[str, Any]:
    """The card's dict form of the model at ``path`` (a fold ensemble: ``{"members": [card, ...]}``).

    Raises:
        UserError: the file is missing, unreadable, not a spine_kp model, or its card breaks a rule (one line).
    """
    p = Path(path)
    if p.suffix.lower() == ".onnx" and not p.is_dir():
        from spine_kp.inference.onnx_predictor import load_card

        return load_card(p).to_dict()
    from spine_kp.fold_ensemble import SpineEnsemble, load_model_file
    from spine_kp.inference.checkpoint_card import card_from_checkpoint

    read = load_model_file(p)
    if isinstance(read, SpineEnsemble):
        return {"members": [card_from_checkpoint(m).to_dict() for m in read.members]}
    return card_from_checkpoint(read).to_dict()


def to_yaml(card: dict[str, Any]) -> str:
    """YAML of a card's dict form: sections as blocks, lists of plain values (a trained mask, an input size) inline."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def sequence(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
        flow = not any(isinstance(x, (dict, list)) for x in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)

    Dumper.add_representer(list, sequence)
    return yaml.dump(card, Dumper=Dumper, sort_keys=False, width=120)


def run(args: argparse.Namespace) -> int:
    print(to_yaml(model_card(args.model)), end="")
    return 0
