"""Careless configs and command lines: strict YAML, packaged names, ranges checked at load time, run folders as
checkpoints, empty splits, annotated images that are not sagittal, symlinked study folders, DDP-reduced losses.

Each case is one error (or warning) that names the file, key, record or setting; the CLI side of every new error is a
row of ``tests/cli/test_user_errors.py``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_configs import TINY_HOURGLASS as HOURGLASS

from spine_kp.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path
from spine_kp.cli.main import main
from spine_kp.config import BOUNDS, ConfigError, apply_overrides, from_dict, load_yaml
from spine_kp.data.datamodule import DataConfig, SpineDataModule
from spine_kp.data.dataset import MissingDataError, resolve_records
from spine_kp.engine.config import (
    ExperimentConfig,
    OptimConfig,
    TrainerConfig,
    experiment_to_dict,
    load_experiment,
    resolve_config_path,
)
from spine_kp.io.annotations import read_annotations, write_annotations
from spine_kp.io.dicom import scan
from spine_kp.io.scan import no_study_message, symlinked_folders
from spine_kp.schema import CONFIG_DIR, SchemaError, load_schema

TINY_HOURGLASS = {**HOURGLASS, "model.head_kwargs": "{hidden: 16, embed_dim: 4}"}


# ----------------------------------------------------------------------------------------------------- strict YAML
def test_a_duplicate_key_in_a_config_file_names_the_file_the_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  lr: 0.1\n  weight_decay: 0.0\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: line 4, column 3: duplicate key 'lr' \(first on line 2\)"):
        load_experiment(path)


def test_a_duplicate_key_in_a_schema_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(
        "name: s\nkinds:\n  disc:\n    grades: {v1: {meaning: normal}}\n  disc:\n    grades: {v2: {meaning: bulge}}\n"
        "landmarks: [{name: L1-L2, kind: disc}]\n"
    )
    with pytest.raises(SchemaError, match=r"schema\.yaml: line 5, column 3: duplicate key 'disc' \(first on line 3\)"):
        load_schema(path)


def test_keys_beside_a_merge_override_it_as_yaml_means(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  <<: {lr: 0.1, weight_decay: 0.5}\n  lr: 0.2\n")
    assert load_yaml(path) == {"optim": {"lr": 0.2, "weight_decay": 0.5}}


def test_an_empty_config_or_schema_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the config file is empty"):
        load_experiment(tmp_path / "empty.yaml")
    with pytest.raises(SchemaError, match=r"empty\.yaml: the schema file is empty"):
        load_schema(tmp_path / "empty.yaml")
    (tmp_path / "defaults.yaml").write_text("{}\n")  # what to write for "all defaults"
    assert load_experiment(tmp_path / "defaults.yaml") == ExperimentConfig()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b"optim:\n\tlr: 0.1\n", r"line 2, column 1: found character '\\t'"),
        (b"model: [1,\n", r"line 2, column 1: .*flow"),
        (b"optim: {lr: 0.1\n", r"line 2, column 1: .*flow mapping"),
        (b"optim:\n  lr: \xff\n", r"not UTF-8 text"),
    ],
    ids=["tab", "unclosed bracket", "unclosed brace", "not utf-8"],
)
def test_malformed_yaml_is_one_line_naming_the_file_and_line(tmp_path: Path, text: bytes, where: str) -> None:
    for load, error in ((load_experiment, ConfigError), (load_schema, SchemaError)):
        path = tmp_path / "bad.yaml"
        path.write_bytes(text)
        with pytest.raises(error, match=rf"bad\.yaml: {where}") as info:
            load(path)
        assert "\n" not in str(info.value)


def test_override_values_are_parsed_strictly_and_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"command line: --data\.input_size: line 1, column 10: expected ','"):
        load_experiment("demo_cpu", {"data.input_size": "[100, 100"})
    with pytest.raises(ConfigError, match=r"--model\.decoder_kwargs: .*duplicate key 'depth'"):
        load_experiment("demo_cpu", {"model.decoder_kwargs": "{depth: 2, depth: 3}"})
    data = {"optim": {"lr": 0.1}}
    assert apply_overrides(data, {"optim.lr": "0.2"}) == {"optim": {"lr": 0.2}} and data == {"optim": {"lr": 0.1}}


# ------------------------------------------------------------------------------------------------ packaged names
def test_a_bare_name_is_the_packaged_file_even_beside_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("tianchi", "demo_cpu", "default"):
        (tmp_path / name).mkdir()
    (tmp_path / "demo_cpu.yaml").write_text("seed: 7\n")  # a local file is taken only when named as one
    assert load_schema("tianchi") == load_schema(CONFIG_DIR / "schema" / "tianchi.yaml")
    assert resolve_config_path("demo_cpu") == CONFIG_DIR / "demo_cpu.yaml"
    assert load_experiment("demo_cpu").seed == 0
    assert load_experiment("demo_cpu.yaml").seed == 7 and load_experiment("./demo_cpu.yaml").seed == 7
    with pytest.raises(SchemaError, match=r"schema tianchi is a folder, not a YAML file; packaged schemas: default"):
        load_schema("tianchi/")


def test_an_unknown_name_lists_the_packaged_ones_and_how_to_give_a_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"unknown schema 'mine': .*packaged schemas: default.*: \./mine\.yaml$"):
        load_schema("mine")
    with pytest.raises(ConfigError, match=r"unknown config 'mine': .*demo_cpu.*\./mine\.yaml$"):
        resolve_config_path("mine")
    with pytest.raises(ConfigError, match=r"config file .*nope\.yml does not exist"):
        resolve_config_path(tmp_path / "nope.yml")


# ------------------------------------------------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trainer.max_epochs": "-1"}, r"'trainer\.max_epochs' must be >= 1, got -1"),
        ({"optim.lr": "-1"}, r"'optim\.lr' must be > 0, got -1\.0"),
        ({"optim.lr": "nan"}, r"'optim\.lr' must be a finite number > 0, got nan"),
        ({"optim.lr": ".inf"}, r"'optim\.lr' must be a finite number > 0, got inf"),
        ({"trainer.devices": "0"}, r"'trainer\.devices' must be 'auto', a count >= 1 \(-1: all\)"),
        ({"trainer.devices": "[]"}, r"'trainer\.devices' must be"),
        ({"data.batch_size": "0"}, r"'data\.batch_size' must be >= 1, got 0"),
        ({"loss.grade_weight": "-0.5"}, r"'loss\.grade_weight' must be >= 0, got -0\.5"),
        ({"data.val_fraction": "0"}, r"'data\.val_fraction' must be > 0 and < 1, got 0\.0"),
        ({"data.val_fraction": "1"}, r"'data\.val_fraction' must be > 0 and < 1, got 1\.0"),
        ({"data.input_size": "[64, 8]"}, r"'data\.input_size' must be >= 16 and <= 4096, got \(64, 8\)"),
        ({"data.neighbours": "-1"}, r"'data\.neighbours' must be >= 0 and <= 8"),
        ({"seed": "-1"}, r"'seed' must be >= 0 and <= 4294967295, got -1"),
        ({"optim.min_lr_ratio": "2"}, r"'optim\.min_lr_ratio' must be >= 0 and <= 1"),
        ({"decode.top_k": "0"}, r"'decode\.top_k' must be >= 1 and <= 64"),
        ({"grade_stage.lr": "0"}, r"'grade_stage\.lr' must be > 0, got 0\.0"),
        ({"grade_stage.channels": "[24, 0]"}, r"'grade_stage\.channels' must be >= 1"),
        ({"codec.sigma": "0"}, r"'codec\.sigma' must be > 0"),
        ({"trainer.limit_val_batches": "1.5"}, r"'trainer\.limit_val_batches' must be a fraction in \(0, 1\]"),
        ({"trainer.monitor_mode": "up"}, r"'trainer\.monitor_mode' must be 'min' or 'max'"),
        ({"calibration.min_points": "0"}, r"'calibration\.min_points' must be >= 1"),
        ({"model.in_chans": "3"}, r"'model\.in_chans' must be 2 \* data\.neighbours \+ 1 = 1"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_a_value_out_of_range_is_one_error_naming_the_dotted_key(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment("demo_cpu", overrides)
    assert str(info.value).startswith(str(CONFIG_DIR / "demo_cpu.yaml")) and "\n" not in str(info.value)


def test_edge_values_inside_the_ranges_are_accepted() -> None:
    cfg = load_experiment(
        "demo_cpu",
        {"trainer.devices": "-1", "trainer.limit_val_batches": "1.0", "data.neighbours": "1", "model.in_chans": "3"},
    )
    assert cfg.trainer.devices == -1 and cfg.model.in_chans == 3
    other = load_experiment("demo_cpu", {"trainer.devices": "[0, 1]", "optim.weight_decay": "0"})
    assert other.trainer.devices == [0, 1] and other.optim.weight_decay == 0.0


def test_the_input_size_must_be_a_multiple_of_the_network_stride() -> None:
    with pytest.raises(
        ConfigError, match=r"'data\.input_size' must be multiples of 32 .* e\.g\. \[96, 96\] or \[128, 128\]"
    ):
        load_experiment("demo_cpu", {"data.input_size": "[100, 100]"})
    # a standalone hourglass needs only its output stride: 100 = 25 x 4 runs, 102 does not
    assert load_experiment("demo_cpu", {**TINY_HOURGLASS, "data.input_size": "[100, 100]"}).model.size_divisor == 4
    with pytest.raises(ConfigError, match=r"'data\.input_size' must be multiples of 4 .*got \[102, 100\]"):
        load_experiment("demo_cpu", {**TINY_HOURGLASS, "data.input_size": "[102, 100]"})


def test_ranges_hold_for_configs_built_in_code_too() -> None:
    with pytest.raises(ValueError, match=r"'lr' must be > 0, got -1"):
        OptimConfig(lr=-1)
    with pytest.raises(ValueError, match=r"'devices' must be"):
        TrainerConfig(devices=0)
    with pytest.raises(ConfigError, match=r"<cfg>: 'trainer\.max_epochs' must be >= 1, got 0"):
        from_dict(ExperimentConfig, {"trainer": {"max_epochs": 0}}, source="<cfg>")


def _numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every int/float (or list/optional of them) setting of a config tree, as (dotted key, field)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _numeric_fields(tp, f"{prefix}{f.name}.")
            continue
        args = {a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis} or {tp}
        if args & {int, float} and tp is not bool:
            out.append((prefix + f.name, f))
    return out


# Settings whose range is checked another way: a choice, or a section that validates itself in __post_init__.
CHECKED_ELSEWHERE = ("model.output_stride", "data.augment.")


def test_every_numeric_setting_has_a_range_next_to_its_field() -> None:
    """A new numeric setting without a range fails here: add ``bounded(default, ...)`` (one edit)."""
    fields = _numeric_fields(ExperimentConfig)
    assert len(fields) > 50
    missing = [key for key, f in fields if BOUNDS not in f.metadata and not key.startswith(CHECKED_ELSEWHERE)]
    assert not missing, missing
    defaults = experiment_to_dict(ExperimentConfig())  # every default is inside its own range
    assert from_dict(ExperimentConfig, defaults) == ExperimentConfig()


# ------------------------------------------------------------------------------------------- run folder checkpoints
def _checkpoint(path: Path) -> Path:
    """An untrained tiny checkpoint saved as training saves it (no training needed to read it back)."""
    from spine_kp.engine.module import LandmarkModule

    cfg = load_experiment("demo_cpu", TINY_HOURGLASS)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def test_a_run_folder_means_its_best_checkpoint(tmp_path: Path) -> None:
    best = _checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert resolve_checkpoint_path(tmp_path / "run") == best
    assert resolve_checkpoint_path(tmp_path / "run" / "checkpoints") == best
    assert resolve_checkpoint_path(best) == best
    assert load_checkpoint(tmp_path / "run").path == best
    from spine_kp.engine.init_weights import read_spine_checkpoint  # train --init

    assert read_spine_checkpoint(tmp_path / "run").path == best


def test_a_folder_without_best_checkpoint_says_what_it_lacks_and_what_it_has(tmp_path: Path) -> None:
    (tmp_path / "half" / "checkpoints").mkdir(parents=True)
    (tmp_path / "half" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"half is a folder without checkpoints/best\.ckpt \(it has .*last\.ckpt"):
        load_checkpoint(tmp_path / "half")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty is a folder without checkpoints/best\.ckpt; give a \.ckpt"):
        load_checkpoint(tmp_path / "empty")


def test_predict_takes_a_run_folder(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    out = tmp_path / "pred.json"
    code = main(["predict", str(synth_root / "studies"), "--checkpoint", str(tmp_path / "run"), "-o", str(out),
                 "--quiet"])  # fmt: skip
    assert code in (0, 1), capsys.readouterr().err  # 1: the tricky files were skipped
    assert len(json.loads(out.read_text())) == 5


# --------------------------------------------------------------------------------------------- data: empty splits
def _data_config(root: Path, **kw: object) -> DataConfig:
    return DataConfig(root=str(root / "studies"), annotations=str(root / "annotations.json"), input_size=(64, 64),
                      batch_size=2, val_fraction=0.4, **kw)  # fmt: skip


def test_an_empty_validation_fold_is_an_error_with_the_counts(synth_root: Path) -> None:
    dm = SpineDataModule(_data_config(synth_root, fold=7, num_folds=10))
    with pytest.raises(MissingDataError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "the validation split is empty: 5 annotated studies" in message
    assert "5 for training, 0 for validation (fold 7 of data.num_folds 10)" in message
    assert "choose --fold (data.fold) below 5, or fewer data.num_folds (at most 5)" in message


def test_a_single_study_cannot_be_split(synth_root: Path, tmp_path: Path) -> None:
    records = read_annotations(synth_root / "annotations.json", load_schema())
    ann = write_annotations(tmp_path / "one.json", records[:1])
    dm = SpineDataModule(replace(_data_config(synth_root), annotations=str(ann)))
    with pytest.raises(MissingDataError, match=r"one\.json: the validation split is empty: 1 annotated studies.*"
                                               r"1 for training, 0 for validation \(data\.val_fraction 0\.4\); "
                                               r"training needs at least 2"):  # fmt: skip
        dm.setup("fit")


# ------------------------------------------------------------------------------- data: annotated image not sagittal
def _axial_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A phantom root with axial series; -> (root, a study UID, an axial image's SOPInstanceUID of that study)."""
    from spine_kp.synth import make_dataset

    root = tmp_path_factory.mktemp("axial")
    make_dataset(root, n_studies=2, seed=3, size=64, axial=True)
    studies = scan(root / "studies").studies
    for uid, study in studies.items():
        for series in study.series:
            if series.plane == "axial":
                return root, uid, series.instances[0].sop_instance_uid
    raise AssertionError("the phantom has no axial series")


@pytest.fixture(scope="module")
def axial_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    return _axial_study(tmp_path_factory)


def test_an_annotated_axial_image_is_refused_naming_the_record(axial_root, tmp_path: Path, caplog) -> None:
    root, study_uid, axial_uid = axial_root
    schema = load_schema()
    records = read_annotations(root / "annotations.json", schema)
    studies = scan(root / "studies").studies
    moved = [replace(r, images=(replace(r.images[0], instance_uid=axial_uid), *r.images[1:]))
             if r.study_uid == study_uid else r for r in records]  # fmt: skip
    assert len(resolve_records(records, studies)[0]) == 2  # the sagittal annotations are kept
    with pytest.raises(MissingDataError) as info:
        resolve_records(moved, studies, root="ROOT")
    message = str(info.value)
    assert message.startswith("1 annotated record(s) cannot be loaded: ")
    assert f"study {study_uid}: annotated instance {axial_uid} is an image of the " in message
    assert "axial" in message and "not a sagittal slice" in message and "--skip-missing" in message
    with caplog.at_level("WARNING", logger="spine_kp.data.dataset"):
        kept, problems = resolve_records(moved, studies, skip_missing=True)
    assert [r.study_uid for r in kept] == [r.study_uid for r in records if r.study_uid != study_uid]
    assert len(problems) == 1 and axial_uid in problems[0]
    assert "skipping 1 of 2 annotated record(s)" in caplog.text


# ------------------------------------------------------------------------------------ data: symlinked study folders
def test_a_root_of_symlinked_study_folders_says_the_links_were_skipped(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "links"
    root.mkdir()
    folders = sorted(p for p in (synth_root / "studies").iterdir() if p.is_dir())
    for folder in folders:
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    assert not scan(root).studies  # links are not followed, on purpose
    assert symlinked_folders(root) == [str(root / f.name) for f in folders]
    message = no_study_message(root, [])
    assert message.startswith(f"{root}: no DICOM study found; {len(folders)} symlinked folder(s) skipped, e.g. ")
    assert "give the folder a link points to as the data root" in message
    assert no_study_message(tmp_path / "links", ["not DICOM: x", "not DICOM: y", "broken link: z"]).startswith(
        f"{root}: no DICOM study found (3 file(s) skipped: 2 not DICOM, 1 broken link); {len(folders)} symlinked"
    )


# -------------------------------------------------------------------------------------------- DDP: reduced losses
def test_training_losses_are_logged_with_sync_dist(synth_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP the epoch value of every training loss is reduced across ranks, like the validation loss."""
    from spine_kp.data.dataset import SpineDataset, collate_samples
    from spine_kp.engine.module import LandmarkModule

    cfg = load_experiment("demo_cpu", TINY_HOURGLASS)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema().to_dict())
    schema = load_schema()
    ds = SpineDataset(read_annotations(synth_root / "annotations.json", schema), scan(synth_root / "studies").studies,
                      schema, codec=module.codec, skip_missing=True)  # fmt: skip
    logged: dict[str, dict] = {}
    monkeypatch.setattr(module, "log", lambda name, value, **kw: logged.__setitem__(name, kw))
    module.training_step(collate_samples([ds[0], ds[1]]), 0)
    assert {"train/total", "train/grade", "train/heatmap"} <= set(logged)
    for name, kwargs in logged.items():
        assert kwargs.get("on_epoch") and kwargs.get("sync_dist") is True, name
