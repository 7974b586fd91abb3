"""The metadata of an ONNX export is checked like a config: ``predict --onnx`` refuses a bad field with one error line.

One export (a tiny network with a crop grading stage of one parasagittal plane per side) per module; the variants
rewrite only its ``metadata_props``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_kp.cli.main import main
from spine_kp.errors import UserError
from spine_kp.inference.onnx_metadata import MetadataError, validate_metadata
from spine_kp.inference.onnx_predictor import METADATA_KEY, OnnxPredictor, graph_shapes, read_metadata
from spine_kp.types import Slice

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class _Missing:
    """Marks a field to delete (a stable repr, so test ids are the same in every xdist worker)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


@pytest.fixture(scope="module")
def stage_checkpoint(make_checkpoint: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 x 64 checkpoint with random weights and a random crop grading stage (16 px crops, 3 planes)."""
    import torch

    from spine_kp.config import to_dict
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.grading.model import create_crop_grader
    from spine_kp.schema import Schema

    base = make_checkpoint("mobilenetv3_small_100")
    ckpt = torch.load(base, map_location="cpu", weights_only=True)
    schema = Schema.from_dict(ckpt["hyper_parameters"]["schema"])
    config = GradeStageConfig(enabled=True, size_px=16, channels=(8,), depth=1, embed_dim=4, hidden=8, neighbours=1)
    torch.manual_seed(1)
    grader = create_crop_grader(config, schema)
    temperatures = {"vertebra": 1.3, "disc": 0.9}
    ckpt["grade_stage"] = {"version": 1, "config": to_dict(config), "state_dict": grader.state_dict()}
    ckpt["grade_stage"] |= {"temperatures": temperatures, "metrics": {}}
    path = tmp_path_factory.mktemp("stage_ckpt") / "stage.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def exported(stage_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spine_kp.export.onnx import export_onnx

    return export_onnx(stage_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx").path


@pytest.fixture(scope="module")
def base_meta(exported: Path) -> dict[str, Any]:
    """The export's document with every optional field filled in (calibration, percentiles), so each can be broken."""
    meta = read_metadata(onnx.load(str(exported)), exported)
    meta["calibration"]["temperatures"] = {"vertebra": 1.2, "disc": 0.8}
    maps = {"localization": {"disc": [1.1, -0.2]}, "scores": {"vertebra": [0.9, 0.1]}}
    meta["calibration"]["score_maps"] = maps
    meta["preprocessing"]["percentiles"] = [1.0, 99.0]
    meta["preprocessing"]["target_spacing"] = (
        0.5  # the test slices are 128 px of 1 mm: both fit 64 px exactly, as without
    )
    return meta


@pytest.fixture(scope="module")
def write_variant(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any], Path]:
    """``write_variant(document)`` -> a copy of the export whose metadata is ``document`` (JSON, NaN allowed)."""
    model = onnx.load(str(exported))
    folder = tmp_path_factory.mktemp("variants")
    count = iter(range(10**6))

    def write(document: Any) -> Path:
        variant = copy.deepcopy(model)
        entry = next(p for p in variant.metadata_props if p.key == METADATA_KEY)
        entry.value = json.dumps(document)
        path = folder / f"variant{next(count)}.onnx"
        onnx.save(variant, str(path))
        return path

    return write


def _set(meta: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``meta``, the dotted ``path`` (list indices as numbers) set to ``value`` (MISSING: deleted)."""
    out = copy.deepcopy(meta)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key = int(last) if isinstance(node, list) else last
    if value is MISSING:
        del node[key]
    else:
        node[key] = value
    return out


# --------------------------------------------------------------------------------------- one error line, per field
# (field path set, value, what the error line must name)
BAD_FIELDS = [
    # neighbours: the network's input channels and the crop grader's planes
    ("preprocessing.neighbours", 1e9, "metadata preprocessing.neighbours: must be an int in 0..8, got 1000000000.0"),
    (
        "preprocessing.neighbours",
        2,
        "metadata preprocessing.neighbours: 2 (5 = 2 * 2 + 1 channels), but the graph's images is (?, 1, 64, 64)",
    ),
    ("network.in_chans", 3, "metadata network.in_chans: must be 2 * neighbours + 1 = 1"),
    ("grade_stage.config.neighbours", 10**9, ("grade_stage.config.neighbours", "1000000000")),
    (
        "grade_stage.config.neighbours",
        2,
        "metadata grade_stage.config: neighbours 2, size_px 16 (12 landmarks x 5 planes",
    ),
    # temperatures
    (
        "calibration.temperatures.disc",
        math.nan,
        "metadata calibration.temperatures.disc: must be a finite number in [0.001, 1000], got nan",
    ),
    ("calibration.temperatures.vertebra", 0, "metadata calibration.temperatures.vertebra: must be a finite number"),
    ("grade_stage.temperatures.disc", -1.0, "metadata grade_stage.temperatures.disc: must be a finite number"),
    ("calibration.temperatures.spine", 1.0, "metadata calibration.temperatures.spine: not a kind of the schema"),
    # target spacing
    (
        "preprocessing.target_spacing",
        -1.6,
        "metadata preprocessing.target_spacing: must be a finite number in (0, 20], got -1.6",
    ),
    ("preprocessing.target_spacing", 25.0, "metadata preprocessing.target_spacing: must be a finite number in (0, 20]"),
    ("preprocessing.target_spacing", "1.6", "metadata preprocessing.target_spacing: must be a finite number"),
    # input size
    ("codec.input_size", [32, 32], "metadata codec.input_size: [32, 32], but the graph's images is (?, 1, 64, 64)"),
    ("codec.input_size", [8, 8], "metadata codec.input_size: must be an int in 16..4096, got 8"),
    ("codec.input_size", ["64", 64], "metadata codec.input_size: must be an int in 16..4096, got '64'"),
    ("codec.input_size", [64, 64, 64], "metadata codec.input_size: must be a list of 2"),
    # schema
    ("schema.landmarks", ["L1", "L2"], "metadata schema: malformed schema"),
    ("schema.landmarks.0.kind", "rib", ("metadata schema: ", "unknown kind 'rib'")),
    ("schema.landmarks", [], "metadata schema.landmarks: 0 landmarks, but the graph's points is (?, 12, 2)"),
    ("schema.kinds.disc.grades.v7", MISSING, "schema.kinds.disc: 6 landmarks x 6 grades, but the graph's grade_logits"),
    # codec
    ("codec.sigma", 0, "metadata codec.sigma: must be a finite number in (0, 64], got 0"),
    ("codec.sigma", math.nan, "metadata codec.sigma: must be a finite number in (0, 64], got nan"),
    ("codec.blur_sigma", 1e9, "metadata codec.blur_sigma: must be a finite number in (0, 64]"),
    ("codec.stride", 2.5, "metadata codec.stride: must be an int in 1..64, got 2.5"),
    ("codec.stride", 0, "metadata codec.stride: must be an int in 1..64, got 0"),
    ("codec.stride", 2, "metadata codec.stride: 2 (12 maps of 32 x 32), but the graph's heatmaps is (?, 12, 16, 16)"),
    ("codec.refine", "magic", "metadata codec: unknown refine 'magic'"),
    # percentiles
    (
        "preprocessing.percentiles",
        [99.0, 1.0],
        "metadata preprocessing.percentiles: must be [low, high] with low < high",
    ),
    ("preprocessing.percentiles", [-5, 99], "metadata preprocessing.percentiles: must be a finite number in [0, 100]"),
    ("preprocessing.percentiles", [1, math.inf], ("metadata preprocessing.percentiles: must be a finite", "got inf")),
    # score calibration (Platt coefficients)
    (
        "calibration.score_maps.scores.vertebra",
        [math.nan, 0.0],
        "metadata calibration.score_maps.scores.vertebra: must be a finite",
    ),
    (
        "calibration.score_maps.scores.disc",
        [1e300, 0.0],
        "metadata calibration.score_maps.scores.disc: must be a finite number",
    ),
    (
        "calibration.score_maps.localization.disc",
        [1.0],
        "metadata calibration.score_maps.localization.disc: must be a list of 2",
    ),
    ("calibration.score_maps.ranking", {}, "metadata calibration.score_maps: unknown key 'ranking'"),
    # crop geometry
    ("grade_stage.config.size_px", 100000, ("grade_stage.config.size_px", "512", "100000")),
    (
        "grade_stage.config.size_px",
        24,
        "metadata grade_stage.config: neighbours 1, size_px 24 (12 landmarks x 3 planes",
    ),
    ("grade_stage.config.window_mm", -56.0, ("grade_stage.config", "window_mm")),
    ("grade_stage.config.window_mm", math.inf, ("grade_stage.config.window_mm", "finite", "inf")),
    ("grade_stage.landmarks", [0, 1, 2], "metadata grade_stage.landmarks: must be the schema indices of the graded"),
    ("grade_stage.kinds", ["disc", "disc"], "metadata grade_stage.kinds: must be distinct kinds of the schema"),
    # decoding
    ("decoding.top_k", 10**6, ("decoding.top_k", "64", "1000000")),
    ("decoding.min_score", 0.0, ("decoding.min_score", "> 0", "0.0")),
    ("decoding.w_order", math.nan, ("decoding.w_order", "finite", "nan")),
    ("decoding.absent_score", 2.0, ("decoding", "absent_score", "2.0")),
    ("decoding.magic", 1, "metadata: unknown key 'decoding.magic'"),
    # malformed shapes: a list for a mapping, a missing key, a string for a number
    ("codec", [4, 2.0], "metadata codec: must be a mapping, got [4, 2.0]"),
    ("trained", MISSING, "metadata trained: missing (required)"),
    ("trained.landmarks.3", 1, "metadata trained.landmarks: must hold only true or false"),
    ("trained.grades.disc", [True], "metadata trained.grades.disc: must be a list of 7"),
    ("grade_stage", "yes", "metadata grade_stage: must be a mapping, got 'yes'"),
    ("grade_stage.config.size_px", "16", ("'grade_stage.config.size_px' must be int", "'16'")),
    ("identity", [], "metadata identity: must be a mapping, got []"),
    ("identity.checkpoint", 7, "metadata identity.checkpoint: must be a string, got 7"),
    ("network", [], "metadata network: must be a mapping, got []"),
    ("surprise", 1, "metadata document: unknown key 'surprise'"),
    ("format", 3, "spine_kp model card format 3, this version reads 2"),
]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_predict_refuses_a_bad_field_with_one_line(
    field: str, value: Any, message: str | tuple[str, ...], base_meta, write_variant, tmp_path: Path, capsys
) -> None:
    model = write_variant(_set(base_meta, field, value))
    out = tmp_path / "pred.json"
    data = tmp_path / "studies"  # refused before any study is read: an empty root will do
    data.mkdir()
    assert main(["predict", str(data), "--onnx", str(model), "-o", str(out), "--quiet", "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {model}: "), line
    assert all(part in line for part in ((message,) if isinstance(message, str) else message)), line
    assert not out.exists()


def test_metadata_that_is_not_an_object_is_one_line(write_variant, tmp_path: Path, capsys) -> None:
    for document in ([1, 2], "text", None):
        model = write_variant(document)
        assert main(["predict", str(tmp_path), "--onnx", str(model), "-o", str(tmp_path / "p.json")]) == 2
        assert f"{model}: damaged spine_kp metadata (a JSON" in _error_line(capsys)


def test_the_real_export_and_the_filled_in_document_are_accepted(
    exported: Path, base_meta, write_variant, synth_root: Path, tmp_path: Path
) -> None:
    model = onnx.load(str(exported))
    checked = validate_metadata(read_metadata(model, exported), str(exported), graph_shapes(model))
    assert checked.grade_stage is not None and checked.grade_stage.config.planes == 3
    assert checked.preprocessing.neighbours == 0 and checked.input_size == (64, 64) and checked.codec.stride == 4
    filled = validate_metadata(base_meta, "m.onnx", graph_shapes(model))
    assert filled.preprocessing.percentiles == (1.0, 99.0)
    assert filled.calibration.score_maps["scores"]["vertebra"] == (0.9, 0.1)
    out = tmp_path / "pred.json"
    args = ["predict", str(synth_root / "studies"), "--onnx", str(write_variant(base_meta)), "-o", str(out)]
    assert main([*args, "--quiet", "--device", "cpu"]) == 0
    scores = [p["score"] for r in json.loads(out.read_text()) for p in r["data"][0]["annotation"][0]["data"]["point"]]
    assert scores and all(0.0 <= s <= 1.0 for s in scores)


def test_without_the_graph_only_the_document_is_checked(base_meta) -> None:
    # The ModelCard case (a checkpoint has no graph): consistency with the graph is skipped, the rest holds.
    smaller = _set(base_meta, "codec.input_size", [32, 32])
    assert validate_metadata(smaller, "x").input_size == (32, 32)
    with pytest.raises(MetadataError, match=r"^x: metadata preprocessing.neighbours: must be an int in 0\.\.8"):
        validate_metadata(_set(base_meta, "preprocessing.neighbours", -1), "x")


def test_a_stage_without_its_graph_input_and_a_huge_value_are_one_short_line(base_meta, shapes) -> None:
    without_crops = {name: axes for name, axes in shapes.items() if name != "crops"}
    with pytest.raises(MetadataError, match=r"^x: the graph has no 'crops' input or output \(grade_stage.config\)"):
        validate_metadata(base_meta, "x", without_crops)
    for field in (
        "decoding.w_peak",
        "preprocessing.target_spacing",
        "schema.landmarks.0.kind",
        "grade_stage.config.combine",
    ):
        with pytest.raises(MetadataError) as caught:
            validate_metadata(_set(base_meta, field, "x" * 10**6), "x", shapes)
        assert len(str(caught.value)) < 600 and "\n" not in str(caught.value), field


# ------------------------------------------------------------------------------- Hypothesis: one field at a time
def _paths(node: Any, prefix: str = "") -> list[str]:
    """Every dotted path of the document (mappings and lists, and their leaves)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        path = f"{prefix}{key}"
        out += [path, *_paths(child, path + ".")]
    return out


#: NaN, inf, 0, negative, huge, wrong type, missing
HOSTILE = [math.nan, math.inf, -math.inf, 0, 0.0, -1, -2.5, 1e300, 2**63, 10**400, "text", "", [], [1], {}, {"a": 1}]
HOSTILE += [True, None, MISSING]


@pytest.fixture(scope="module")
def shapes(exported: Path) -> dict[str, tuple[int | None, ...]]:
    return graph_shapes(onnx.load(str(exported)))


@pytest.fixture(scope="module")
def sessions(exported: Path) -> list[Any]:
    """The export's three sessions, built once (each accepted variant reuses them: only the metadata differs)."""
    predictor = OnnxPredictor.from_onnx(exported, device="cpu", threads=1)
    return [predictor.network.network, predictor.network.grader, predictor.grade_stage.session]


def _slice() -> Slice:
    """A 128 x 128 slice of 1 mm pixels and its neighbours (3 planes): it fills the 64 px input with or without the
    target spacing, so every point inside the input is inside the image."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    pixels = (100 * np.exp(-((xx - 60) ** 2 + (yy - 70) ** 2) / 800) + rng.normal(0, 5, (128, 128))).astype(np.float32)
    stack = np.stack([pixels * 0.9, pixels, pixels * 1.1])
    return Slice(pixels, (1.0, 1.0), "1.2.3", "1.2.3.4", "1.2.3.4.5", 1, 3, stack=stack)


def _assert_sane(predictor: OnnxPredictor, slc: Slice) -> None:
    (pred,) = predictor.predict([slc])
    points = pred.record.images[0].points
    assert points  # an untrained network still places its landmarks
    for p in points:
        assert p.score is not None and 0.0 <= p.score <= 1.0, p
        x, y = p.coord
        assert -0.5 <= x <= 127.5 and -0.5 <= y <= 127.5, p
    for probs in pred.grade_probs.values():
        assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_any_value_of_any_field_is_accepted_sanely_or_refused(data, base_meta, shapes, sessions) -> None:
    path = data.draw(st.sampled_from(_paths(base_meta)), label="field")
    value = data.draw(st.sampled_from(HOSTILE), label="value")
    meta = _set(base_meta, path, value)
    try:
        checked = validate_metadata(meta, "model.onnx", shapes)
    except UserError as exc:  # a refusal: one line naming the file
        text = str(exc)
        assert text.startswith("model.onnx: ") and "\n" not in text, text
        return
    _assert_sane(OnnxPredictor.from_sessions(sessions, checked), _slice())
