"""One error contract for every command: a user mistake is exactly one ``error:`` line naming the file, record, field
or flag, exit status 2, never a traceback; ``--debug`` shows the traceback; genuine bugs keep theirs.

Every row fails before any training or prediction starts, so the table runs in seconds on tiny phantom data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from spine_kp.cli.main import main
from spine_kp.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: more threads only thrash on 2 shared cores

# A tiny hourglass on 64 x 64 inputs: the --skip-missing run and the hand-made checkpoints stay cheap.
TINY = [
    "--model.backbone", "none", "--model.decoder", "hourglass", "--model.output_stride", "4",
    "--model.decoder_channels", "8", "--model.decoder_kwargs", "{num_stacks: 2, depth: 2}",
    "--model.head_kwargs", "{hidden: 16, embed_dim: 4}", "--data.input_size", "[64, 64]", "--data.batch_size", "2",
    "--data.val_fraction", "0.4", "--data.augment.enabled", "false", "--trainer.progress_bar", "false",
]  # fmt: skip


@dataclass
class Ctx:
    """Paths a row builds its command line from: ``tmp`` is the test's own folder, ``synth`` the shared phantoms."""

    tmp: Path
    synth: Path

    @property
    def data(self) -> Path:
        return self.synth / "studies"

    @property
    def ann(self) -> Path:
        return self.synth / "annotations.json"

    def file(self, name: str, text: str = "not what was asked for\n") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def foreign_checkpoint(self, name: str = "foreign.ckpt") -> Path:
        """A readable torch file that is not a spine_kp checkpoint (a bare state dict)."""
        import torch

        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"conv.weight": torch.zeros(2, 1, 3, 3)}, path)
        return path

    def checkpoint(self, name: str = "made.ckpt", bad_model_key: bool = False) -> Path:
        """A valid predict checkpoint made without training (untrained tiny weights); optionally a bad stored config."""
        import torch

        from spine_kp.config import from_dict, parse_override_args
        from spine_kp.engine.config import experiment_to_dict, load_experiment
        from spine_kp.models.net import ModelConfig, create_model
        from spine_kp.schema import load_schema

        config = experiment_to_dict(load_experiment("demo_cpu", parse_override_args(TINY)))
        schema = load_schema(None)
        model = create_model(from_dict(ModelConfig, config["model"]), schema)
        if bad_model_key:
            config["model"]["bogus"] = 1
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        path = self.tmp / name
        torch.save({"hyper_parameters": {"config": config, "schema": schema.to_dict()}, "state_dict": state}, path)
        return path

    def train(self, *extra: str, data: Path | None = None, ann: Path | None = None, out: Path | None = None) -> list:
        return [
            "train", "--config", "demo_cpu", "--data", str(data or self.data), "--annotations", str(ann or self.ann),
            "--out", str(out or self.tmp / "run"), *extra,
        ]  # fmt: skip

    def predict(self, *extra: str, root: Path | None = None, ckpt: Path | None = None, out: Path | None = None) -> list:
        return [
            "predict", str(root or self.data), "--checkpoint", str(ckpt or self.tmp / "nope.ckpt"),
            "-o", str(out or self.tmp / "pred.json"), "--quiet", *extra,
        ]  # fmt: skip

    def evaluate(self, *extra: str, predictions: Path | None = None) -> list:
        return ["evaluate", "--annotations", str(self.ann), "--predictions", str(predictions or self.ann), *extra]

    def resume_with_foreign_last(self) -> list:
        self.foreign_checkpoint("run/checkpoints/last.ckpt")
        return self.train("--resume")

    def full_synth_out(self) -> list:
        self.file("full/studies/old/x.dcm")
        return ["synth", str(self.tmp / "full"), "--studies", "1", "--size", "64"]

    def linked_root(self) -> Path:
        """A root that holds only symbolic links to the phantom study folders (links are not followed)."""
        root = self.folder("links")
        for study in sorted(p for p in self.data.iterdir() if p.is_dir()):
            (root / study.name).symlink_to(study, target_is_directory=True)
        return root

    def train_on_an_axial_annotation(self) -> list:
        """Phantoms with axial series, one record's annotated image moved to an axial image of its study."""
        from spine_kp.io.dicom import scan
        from spine_kp.synth import make_dataset

        make_dataset(self.tmp / "ax", n_studies=2, seed=3, size=64, axial=True)
        studies = scan(self.tmp / "ax" / "studies").studies
        axial = {uid: se.instances[0].sop_instance_uid for uid, st in studies.items() for se in st.series
                 if se.plane == "axial"}  # fmt: skip
        records = json.loads((self.tmp / "ax" / "annotations.json").read_text())
        uid = next(r["studyUid"] for r in records if r["studyUid"] in axial)
        record = next(r for r in records if r["studyUid"] == uid)
        record["data"][0]["instanceUid"] = axial[uid]
        ann = self.file("ax_gt.json", json.dumps(records))
        return self.train(data=self.tmp / "ax" / "studies", ann=ann)


Row = tuple[str, Callable[[Ctx], list], str]

# (description, argv builder, substring the one error line must contain)
ROWS: list[Row | object] = [
    # annotations
    ("train: malformed annotations", lambda c: c.train(ann=c.file("bad.json", '[{"version": "v0.1"}]')),
     "bad.json: record 0"),
    ("train: annotations file missing", lambda c: c.train(ann=c.tmp / "nope.json"), "nope.json"),
    ("evaluate: malformed predictions", lambda c: c.evaluate(predictions=c.file("bad.json", "[1]")), "bad.json"),
    # data roots
    ("train: annotated studies missing under --data", lambda c: c.train(data=c.folder("empty")), "--skip-missing"),
    ("train: --data does not exist", lambda c: c.train(data=c.tmp / "no_root"), "no_root: not a folder"),
    ("predict: data root does not exist", lambda c: c.predict(root=c.tmp / "no_root"), "no_root is not a folder"),
    ("predict: empty data root", lambda c: c.predict(root=c.folder("empty"), ckpt=c.checkpoint()),
     "empty: no DICOM study found"),
    ("inspect: empty data root", lambda c: ["inspect", str(c.folder("empty"))], "empty: no DICOM study found"),
    ("inspect: data root does not exist", lambda c: ["inspect", str(c.tmp / "no_root")], "no_root: not a folder"),
    ("evaluate: --data does not exist", lambda c: c.evaluate("--data", str(c.tmp / "no_root")),
     "no_root: not a folder"),
    ("evaluate: --data holds no DICOM study", lambda c: c.evaluate("--data", str(c.folder("empty"))),
     "empty: no DICOM study found"),
    ("evaluate: predictions is a folder", lambda c: c.evaluate(predictions=c.folder("empty")), "empty: is a folder"),
    ("inspect: root of symlinked study folders", lambda c: ["inspect", str(c.linked_root())],
     "links: no DICOM study found; 5 symlinked folder(s) skipped"),
    ("predict: root of symlinked study folders", lambda c: c.predict(root=c.linked_root(), ckpt=c.checkpoint()),
     "5 symlinked folder(s) skipped"),
    ("evaluate: --data of symlinked study folders", lambda c: c.evaluate("--data", str(c.linked_root())),
     "5 symlinked folder(s) skipped"),
    ("train: annotated image is not a sagittal slice", lambda c: c.train_on_an_axial_annotation(),
     "not a sagittal slice. Fix the data root or the annotations"),
    ("train: --fold leaves the validation split empty", lambda c: c.train("--fold", "7", "--data.num_folds", "10"),
     "the validation split is empty: 5 annotated studies"),
    # config keys and values
    ("train: unknown config key", lambda c: c.train("--model.backbon", "x"), "unknown key 'model.backbon'"),
    ("train: bad config value", lambda c: c.train("--optim.lr", "fast"), "'optim.lr' must be float"),
    ("train: --fold out of range", lambda c: c.train("--fold", "9"), "fold must be in [0, 5)"),
    ("train: --config not found", lambda c: c.train("--config", "no_such_cfg"), "no_such_cfg"),
    ("train: --config is a folder", lambda c: c.train("--config", str(c.folder("cfgdir"))), "is a folder, not a YAML"),
    ("train: duplicate key in --config", lambda c: c.train("--config", str(c.file("dup.yaml", "seed: 1\nseed: 2\n"))),
     "dup.yaml: line 2, column 1: duplicate key 'seed' (first on line 1)"),
    ("train: empty --config", lambda c: c.train("--config", str(c.file("empty.yaml", ""))),
     "empty.yaml: the config file is empty"),
    ("train: unclosed bracket in --config", lambda c: c.train("--config", str(c.file("br.yaml", "model: [1,\n"))),
     "br.yaml: line 2, column 1"),
    ("train: tab in --config", lambda c: c.train("--config", str(c.file("tab.yaml", "optim:\n\tlr: 1\n"))),
     "tab.yaml: line 2, column 1: found character"),
    ("train: malformed override value", lambda c: c.train("--data.input_size", "[100, 100"),
     "--data.input_size: line 1, column 10"),
    ("evaluate: duplicate key in --schema", lambda c: c.evaluate("--schema", str(c.file("s.yaml", "a: 1\na: 2\n"))),
     "s.yaml: line 2, column 1: duplicate key 'a'"),
    ("train: --trainer.max_epochs -1", lambda c: c.train("--trainer.max_epochs", "-1"),
     "'trainer.max_epochs' must be >= 1, got -1"),
    ("train: --optim.lr -1", lambda c: c.train("--optim.lr", "-1"), "'optim.lr' must be > 0, got -1.0"),
    ("train: input size not a multiple of the stride", lambda c: c.train("--data.input_size", "[100, 100]"),
     "'data.input_size' must be multiples of 32"),
    ("train: --trainer.devices 0", lambda c: c.train("--trainer.devices", "0"), "'trainer.devices' must be"),
    ("train: --data.batch_size 0", lambda c: c.train("--data.batch_size", "0"), "'data.batch_size' must be >= 1"),
    ("train: negative loss weight", lambda c: c.train("--loss.grade_weight", "-1"), "'loss.grade_weight' must be >= 0"),
    ("train: val_fraction outside (0, 1)", lambda c: c.train("--data.val_fraction", "1.5"),
     "'data.val_fraction' must be > 0 and < 1"),
    ("pretrain: unknown config key", lambda c: ["pretrain", "--out", str(c.tmp / "p"), "--model.backbon", "x"],
     "model.backbon"),
    ("demo: bad config value", lambda c: ["demo", "--out", str(c.tmp / "d"), "--trainer.max_epochs", "many"],
     "trainer.max_epochs"),
    ("predict: bad config stored in the checkpoint", lambda c: c.predict(ckpt=c.checkpoint(bad_model_key=True)),
     "unknown key 'bogus'"),
    # checkpoints
    ("predict: checkpoint does not exist", lambda c: c.predict(), "nope.ckpt does not exist"),
    ("predict: run folder without best.ckpt", lambda c: c.predict(ckpt=c.folder("run")),
     "run is a folder without checkpoints/best.ckpt"),
    ("export: run folder without best.ckpt", lambda c: ["export", str(c.folder("run")), "--onnx", str(c.tmp / "m")],
     "run is a folder without checkpoints/best.ckpt"),
    ("predict: unreadable checkpoint", lambda c: c.predict(ckpt=c.file("notes.ckpt")), "notes.ckpt: not a spine_kp"),
    ("predict: foreign checkpoint", lambda c: c.predict(ckpt=c.foreign_checkpoint()), "foreign.ckpt: not a spine_kp"),
    ("train --init: checkpoint does not exist", lambda c: c.train("--init", str(c.tmp / "nope.ckpt")), "nope.ckpt"),
    ("train --init: unreadable checkpoint", lambda c: c.train("--init", str(c.file("notes.ckpt"))), "notes.ckpt"),
    ("train --init: foreign checkpoint", lambda c: c.train("--init", str(c.foreign_checkpoint())),
     "foreign.ckpt: not a spine_kp checkpoint"),
    ("train --resume: no last.ckpt", lambda c: c.train("--resume"), "last.ckpt does not exist"),
    ("train --resume: foreign last.ckpt", lambda c: c.resume_with_foreign_last(), "last.ckpt: not a spine_kp"),
    # outputs that cannot be written
    ("train: --out is a regular file", lambda c: c.train(out=c.file("afile")), "afile: is a file, not a folder"),
    ("predict: -o under a regular file", lambda c: c.predict(out=c.file("afile") / "pred.json"), "afile: not a folder"),
    ("train: a config nested 10^5 deep", lambda c: c.train("--config", str(c.file("deep.yaml", "[" * 100000))),
     "deep.yaml: nested too deeply"),
    ("evaluate: annotations nested 10^5 deep", lambda c: c.evaluate(predictions=c.file("deep.json", "[" * 100000)),
     "deep.json: not an annotation file (JSON nested too deeply)"),
    ("train: model.pretrained without a backbone",
     lambda c: c.train("--model.backbone", "none", "--model.decoder", "hourglass", "--model.pretrained",
                       str(c.foreign_checkpoint("w.pth"))), "runs without a backbone to load it into"),
    ("evaluate: --report would overwrite --predictions",
     lambda c: c.evaluate("--report", str(c.tmp), predictions=c.file("metrics.json", "[]")), "--report metrics.json"),
    ("evaluate: --report under a regular file", lambda c: c.evaluate("--report", str(c.file("afile") / "r")),
     "afile: not a folder"),
    ("synth: OUT under a regular file", lambda c: ["synth", str(c.file("afile") / "x"), "--studies", "1"],
     "afile/x/studies: not a folder"),
    ("synth: OUT/studies not empty", lambda c: c.full_synth_out(), "pass --overwrite"),
    # option values and usage
    ("synth: negative --studies", lambda c: ["synth", str(c.tmp / "s"), "--studies", "-1"], "--studies must be >= 0"),
    ("pretrain: too few --studies", lambda c: ["pretrain", "--out", str(c.tmp / "p"), "--studies", "1"], "--studies"),
    ("demo: negative --train-studies", lambda c: ["demo", "--out", str(c.tmp / "d"), "--train-studies", "-1"],
     "--train-studies must be at least 2"),
    ("predict: --batch-size 0", lambda c: c.predict("--batch-size", "0"), "--batch-size must be at least 1"),
    ("evaluate: --radius 0", lambda c: c.evaluate("--radius", "0"), "--radius must be positive"),
    ("usage: not an integer", lambda c: ["synth", str(c.tmp / "s"), "--studies", "many"], "argument --studies"),
    ("usage: missing required option", lambda c: ["train", "--data", str(c.data)], "--annotations, --out"),
    ("usage: unknown option", lambda c: ["inspect", str(c.data), "--bogus"], "unrecognized arguments: --bogus"),
    ("usage: unknown command", lambda c: ["trian"], "invalid choice: 'trian'"),
]  # fmt: skip


def _param(row: object) -> object:
    """A table row as a pytest parameter named by its description (rows that are already parameters keep marks)."""
    if hasattr(row, "marks"):  # a pytest.param (a named tuple itself)
        return pytest.param(*row.values, id=row.values[0], marks=row.marks)  # type: ignore[attr-defined]
    return pytest.param(*row, id=row[0])  # type: ignore[misc]


PARAMS = [_param(r) for r in ROWS]


def test_the_table_covers_at_least_15_mistakes_of_every_command() -> None:
    assert len(PARAMS) >= 15
    commands = {p.id.split(":")[0].split()[0] for p in PARAMS}
    assert {"train", "predict", "inspect", "evaluate", "synth", "pretrain", "demo", "usage"} <= commands


@pytest.mark.parametrize(("description", "argv", "expected"), PARAMS)
def test_a_user_mistake_is_one_error_line_and_exit_2(
    description: str, argv: Callable[[Ctx], list], expected: str, synth_root: Path, tmp_path: Path, capsys
) -> None:
    args = argv(Ctx(tmp_path, synth_root))
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (description, err)
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]


def test_missing_studies_error_then_skip_missing_trains_on_the_rest(synth_root: Path, tmp_path: Path, capsys) -> None:
    ghost = "9.9.9.404"
    records = json.loads((synth_root / "annotations.json").read_text())
    records.append({**records[0], "studyUid": ghost})
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(records))
    ctx = Ctx(tmp_path, synth_root)

    assert main(ctx.train(*TINY, ann=ann)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: 1 annotated record(s) cannot be loaded") and ghost in line
    assert "--skip-missing" in line

    assert main(ctx.train(*TINY, "--skip-missing", "--fast-dev-run", ann=ann)) == 0
    out, err = capsys.readouterr()
    warning = [x for x in err.splitlines() if x.startswith("warning: ")]
    assert warning and "trained without 1 annotated record(s)" in warning[0] and ghost in warning[0]
    assert "run directory:" in out


def test_read_only_output_is_one_error_line_also_as_root(
    synth_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != ro and real_access(p, mode, **kw))
    assert main(Ctx(tmp_path, synth_root).predict(out=ro / "pred.json")) == 2
    assert capsys.readouterr().err == f"error: {ro}: permission denied\n"


def test_debug_before_or_after_the_command_raises_instead(tmp_path: Path) -> None:
    from spine_kp.io.dicom import IngestError

    for argv in (["--debug", "inspect", str(tmp_path / "no_root")], ["inspect", str(tmp_path / "no_root"), "--debug"]):
        with pytest.raises(IngestError, match="no_root: not a folder"):
            main(argv)
    (tmp_path / "afile").touch()
    with pytest.raises(NotADirectoryError):  # an OSError on a user path is re-raised too
        main(["--debug", "synth", str(tmp_path / "afile" / "x"), "--studies", "0"])


def test_debug_shows_the_traceback_in_a_subprocess(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "spine_kp", "--debug", "inspect", str(tmp_path / "no_root")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode not in (0, 2)
    assert proc.stderr.startswith("Traceback") and "IngestError: " in proc.stderr and "no_root" in proc.stderr
    plain = subprocess.run(cmd[:3] + cmd[4:], capture_output=True, text=True, timeout=120)
    assert (plain.returncode, plain.stderr) == (2, f"error: {tmp_path / 'no_root'}: not a folder\n")


def test_genuine_bugs_keep_their_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(root, workers=1):
        raise FileNotFoundError(2, "No such file or directory", "/opt/spine_kp/internal/table.bin")

    monkeypatch.setattr("spine_kp.io.dicom.scan", broken)
    with pytest.raises(FileNotFoundError):  # a path the user never gave: a bug, not a mistake
        main(["inspect", str(tmp_path)])

    def above(root, workers=1):  # a folder above the user's path read as a file: a bug, not a mistake
        raise IsADirectoryError(21, "Is a directory", str(tmp_path))

    monkeypatch.setattr("spine_kp.io.dicom.scan", above)
    with pytest.raises(IsADirectoryError):
        main(["inspect", str(tmp_path / "data")])

    def buggy(root, workers=1):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr("spine_kp.io.dicom.scan", buggy)
    with pytest.raises(ValueError, match="invariant"):
        main(["inspect", str(tmp_path)])


def test_package_errors_are_user_errors_and_keep_their_builtin_base() -> None:
    from spine_kp.checkpoint import CheckpointError
    from spine_kp.config import ConfigError
    from spine_kp.data.dataset import MissingDataError
    from spine_kp.evaluation.spacing import SpacingError
    from spine_kp.io.annotation_parse import AnnotationError
    from spine_kp.io.dicom import IngestError, NoSagittalSeries
    from spine_kp.schema import SchemaError

    for cls in (ConfigError, SchemaError, AnnotationError, IngestError, NoSagittalSeries, MissingDataError,
                CheckpointError, SpacingError):  # fmt: skip
        assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls
