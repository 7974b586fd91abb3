"""The model card: one document per trained model, stored alike in a checkpoint and an ONNX export, read by both
predictors through ``ModelCard.from_dict`` (round trip, refusals, old checkpoints, ``spine-kp card``, new settings)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from spine_kp.checkpoint import DECODE_FIT_KEY, MODEL_CARD_KEY, load_checkpoint, write_entry
from spine_kp.cli.main import main
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.inference import card as card_module
from spine_kp.inference.card import ModelCard
from spine_kp.inference.card_checks import CardError
from spine_kp.inference.checkpoint_card import card_from_checkpoint
from spine_kp.inference.onnx_predictor import METADATA_KEY, OnnxPredictor, load_card
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.types import Slice


@pytest.fixture(scope="module")
def trained(train_tiny: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    """best.ckpt of a one-epoch tiny run (training stores its model card)."""
    return train_tiny(tmp_path_factory.mktemp("card_run")).best_checkpoint


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spine_kp.export.onnx import export_onnx

    return export_onnx(trained, tmp_path_factory.mktemp("card_onnx") / "model.onnx").path


def _rewrite(src: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of checkpoint ``src`` with ``edit`` applied to its contents."""
    data = torch.load(src, map_location="cpu", weights_only=True)
    edit(data)
    torch.save(data, out)
    return out


def _rewrite_onnx(src: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of export ``src`` with ``edit`` applied to its model card."""
    model = onnx.load(str(src))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    card = json.loads(entry.value)
    edit(card)
    entry.value = json.dumps(card)
    onnx.save(model, str(out))
    return out


def _slice() -> Slice:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    pixels = (100 * np.exp(-((xx - 60) ** 2 + (yy - 70) ** 2) / 800) + rng.normal(0, 5, (128, 128))).astype(np.float32)
    return Slice(pixels, (1.0, 1.0), "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 3)


def test_training_stores_the_card_and_it_round_trips(trained: Path, exported: Path) -> None:
    ckpt = load_checkpoint(trained)
    assert ckpt.model_card is not None and ckpt.model_card["identity"]["sha256"] == ""  # the file's own: on read
    card = card_from_checkpoint(ckpt)
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())), "x")
    assert again.to_dict() == card.to_dict()
    assert card.identity.checkpoint == "best.ckpt" and len(card.identity.sha256) == 64
    # the checkpoint's card and the export's are one document
    assert load_card(exported).to_dict() == card.to_dict()
    assert Predictor.from_checkpoint(trained, device="cpu").card.to_dict() == card.to_dict()


def test_a_checkpoint_without_a_card_predicts_the_same(trained: Path, tmp_path: Path) -> None:
    old = _rewrite(trained, tmp_path / "old.ckpt", lambda d: d.pop(MODEL_CARD_KEY))
    assert load_checkpoint(old).model_card is None
    new_p, old_p = (Predictor.from_checkpoint(p, device="cpu") for p in (trained, old))
    sections = {k: v for k, v in old_p.card.to_dict().items() if k != "identity"}
    assert sections == {k: v for k, v in new_p.card.to_dict().items() if k != "identity"}
    (a,), (b,) = new_p.predict([_slice()]), old_p.predict([_slice()])
    assert np.array_equal(a.coords, b.coords) and np.array_equal(a.peaks, b.peaks)
    assert all(np.array_equal(a.grade_probs[k], b.grade_probs[k]) for k in a.grade_probs)
    assert a.record == b.record


def test_writing_an_entry_drops_the_stale_card(trained: Path, tmp_path: Path) -> None:
    path = _rewrite(trained, tmp_path / "refit.ckpt", lambda d: None)
    write_entry(path, DECODE_FIT_KEY, {"absent_score": 0.05, "step_tolerance": 0.3})
    ckpt = load_checkpoint(path)
    assert ckpt.model_card is None  # rebuilt from the entries, so the new fit is what predicts
    assert card_from_checkpoint(ckpt).decoding.absent_score == 0.05


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("preprocessing.neighbours", 99, "model_card preprocessing.neighbours: must be an int in 0..8, got 99"),
        ("calibration.temperatures.disc", 0.0, "model_card calibration.temperatures.disc: must be a finite number"),
        ("decoding.top_k", 10**6, ("model_card", "decoding.top_k", "1000000")),
        ("codec.stride", "4", "model_card codec.stride: must be an int in 1..64, got '4'"),
    ],
)
def test_a_bad_card_field_is_one_error_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any, message: Any
) -> None:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = field.split(".")
        node = data[MODEL_CARD_KEY]
        for key in parents:
            node = node[key]
        node[last] = value

    bad = _rewrite(trained, tmp_path / "bad.ckpt", edit)
    with pytest.raises(CardError):
        Predictor.from_checkpoint(bad, device="cpu")
    assert main(["card", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: "), err
    assert all(part in err[0] for part in ((message,) if isinstance(message, str) else message)), err


def test_spine_kp_card_prints_the_same_yaml_for_checkpoint_and_export(
    trained: Path, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    assert main(["card", str(trained.parent.parent)]) == 0  # the run folder stands for its best.ckpt
    from_ckpt = capsys.readouterr().out
    assert main(["card", str(exported)]) == 0
    from_onnx = capsys.readouterr().out
    assert from_ckpt == from_onnx
    sections = yaml.safe_load(from_ckpt)
    assert list(sections) == list(card_module.SECTIONS) and sections["decoding"]["enabled"] is True


#: a valid value other than the default, for every field of the card's decoding section
DECODING_VALUES = {
    "enabled": False,
    "top_k": 7,
    "w_peak": 2.0,
    "w_step": 0.5,
    "step_tolerance": 0.25,
    "w_order": 10.0,
    "order_margin": 0.2,
    "min_score": 0.001,
    "absent_score": 0.05,
    "absent_score_caudal": 0.0,
    "fit": False,
    "flip_tta": True,
    "top_k_grades": 3,
}


def test_every_decoding_setting_has_a_test_value() -> None:
    assert set(DECODING_VALUES) == {f.name for f in dataclasses.fields(LevelOrderConfig)}


def _both(trained: Path, exported: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> tuple[Any, Any]:
    ckpt = _rewrite(trained, tmp_path / "edited.ckpt", lambda d: edit(d[MODEL_CARD_KEY]))
    model = _rewrite_onnx(exported, tmp_path / "edited.onnx", edit)
    return Predictor.from_checkpoint(ckpt, device="cpu"), OnnxPredictor.from_onnx(model, device="cpu", threads=1)


@pytest.mark.parametrize("field", sorted(DECODING_VALUES))
def test_a_decoding_setting_in_the_card_reaches_both_predictors(
    field: str, trained: Path, exported: Path, tmp_path: Path
) -> None:
    torch_p, onnx_p = _both(
        trained, exported, tmp_path, lambda c: c["decoding"].__setitem__(field, DECODING_VALUES[field])
    )
    assert getattr(torch_p.decode, field) == getattr(onnx_p.decode, field) == DECODING_VALUES[field]


def test_a_card_with_flip_tta_predicts_flipped_by_default_and_the_caller_can_say_no(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    """``decoding.flip_tta`` (a config's ``decode.flip_tta``) is the default of both backends' ``predict``."""
    for predictor in _both(trained, exported, tmp_path, lambda c: c["decoding"].__setitem__("flip_tta", True)):
        (default,), (flipped,), (plain,) = (predictor.predict([_slice()], flip_tta=f) for f in (None, True, False))
        assert np.array_equal(default.coords, flipped.coords) and np.array_equal(default.peaks, flipped.peaks)
        assert all(np.array_equal(default.grade_probs[k], flipped.grade_probs[k]) for k in default.grade_probs)
        assert not np.array_equal(default.peaks, plain.peaks)  # the mirrored view was averaged in


def test_a_card_with_top_k_grades_writes_that_many_grades_by_default_and_the_caller_can_say_otherwise(
    trained: Path, exported: Path, tmp_path: Path
) -> None:
    """``decoding.top_k_grades`` (a config's ``decode.top_k_grades``) is the default of both backends' records."""
    for predictor in _both(trained, exported, tmp_path, lambda c: c["decoding"].__setitem__("top_k_grades", 3)):
        (default,), (one,), (three,) = (predictor.predict([_slice()], top_k_grades=k) for k in (None, 0, 3))
        per = [Counter(p.identification for p in pred.record.points) for pred in (default, one, three)]
        assert per[0] == per[2] and set(per[0].values()) == {2, 3}  # vertebrae: both grades; discs: 3 of 7
        assert set(per[1].values()) <= {1, 2} and per[1] != per[0]  # only the confident grades
        rescored = predictor.record(default.slice, default.coords, default.peaks, default.grade_probs)
        assert rescored.points == default.record.points  # record() reads the card's setting too


def test_a_new_decoding_field_needs_no_other_change(
    trained: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a field to the decoding section (here by extending it) is all both predictors need to read it."""

    @dataclasses.dataclass(frozen=True)
    class WithNewSetting(LevelOrderConfig):
        new_setting: float = 1.0

    monkeypatch.setattr(card_module, "LevelOrderConfig", WithNewSetting)
    torch_p, onnx_p = _both(trained, exported, tmp_path, lambda c: c["decoding"].__setitem__("new_setting", 0.25))
    assert torch_p.decode.new_setting == onnx_p.decode.new_setting == 0.25
    assert torch_p.card.to_dict()["decoding"]["new_setting"] == 0.25


def test_an_export_of_the_flat_format_1_still_loads(exported: Path, tmp_path: Path) -> None:
    """Exports written before the card kept the same settings as flat keys; they are read as cards."""
    card = load_card(exported).to_dict()

    def flatten(meta: dict[str, Any]) -> None:
        meta.clear()
        meta |= {"format": 1, "schema": card["schema"], "codec": card["codec"], "decode": card["decoding"]}
        meta |= {"trained": card["trained"], "input_size": card["codec"]["input_size"], "in_chans": 1}
        meta |= {"neighbours": 0, "percentiles": None, "target_spacing": None, "temperatures": {"disc": 2.0}}
        meta |= {"score_calibration": {"scores": {"disc": [1.0, 0.5]}}}
        meta["model"] = {"name": "m", "config": card["network"], "checkpoint": "best.ckpt", "checkpoint_sha256": "ab"}

    old = load_card(_rewrite_onnx(exported, tmp_path / "v1.onnx", flatten))
    assert old.calibration.temperatures == {"disc": 2.0} and old.calibration.score_maps["scores"] == {
        "disc": (1.0, 0.5)
    }
    assert old.identity.sha256 == "ab" and old.decoding == load_card(exported).decoding
