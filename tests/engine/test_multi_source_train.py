"""One model trained on two data sets whose label sets differ: the loss ignores what a study does not annotate, and
``spine-kp train --data A --annotations A.json --data B --annotations B.json`` predicts both sets' landmarks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN
from multi_source_phantoms import SCHEMA, Source, make_two_sources
from tiny_configs import TINY_HOURGLASS, cut_only

from spine_kp.cli.main import main
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.dataset import collate_samples
from spine_kp.data.transforms import AugmentConfig
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.train import replace_data_sources

HOURGLASS = {**TINY_HOURGLASS, "data.batch_size": "2", "data.val_fraction": "0.4", "loss.absent_weight": "0.5"}
CUT = cut_only((0.3, 0.5))


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Source, Source]:
    return make_two_sources(tmp_path_factory.mktemp("two_sources"))


def _module_and_data(two: tuple[Source, Source], augment: AugmentConfig) -> tuple[LandmarkModule, SpineDataModule]:
    cfg = replace_data_sources(load_experiment("demo_cpu", HOURGLASS), [(s.root, s.annotations) for s in two])
    cfg = replace(cfg, data=replace(cfg.data, augment=augment))
    module = LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict())
    dm = SpineDataModule(cfg.data, schema=SCHEMA, codec=module.codec)
    dm.setup("fit")
    stats = dm.label_stats  # the module of a real run knows the union's trained landmarks
    module = LandmarkModule(experiment_to_dict(cfg), SCHEMA.to_dict(), stats.to_dict(), codec=module.codec.to_dict())
    return module, dm


def _annotated(src: Source) -> torch.Tensor:
    return torch.tensor([n in src.landmarks for n in SCHEMA.landmarks])


def _source_of(uid: str, two: tuple[Source, Source]) -> Source:
    return next(s for s in two if uid in s.study_uids)


def test_the_heatmap_loss_weight_of_each_landmark_per_source(two: tuple[Source, Source]) -> None:
    """1 for an annotated landmark in view, absent_weight for one cut out of view, 0 for one the study lacks."""
    module, dm = _module_and_data(two, CUT)
    ds = dm.train_dataset
    cut = 0
    for _ in range(6):
        batch = collate_samples([ds[i] for i in range(len(ds))])
        _, weight = module._heatmap_targets(batch)
        for row, uid in enumerate(batch["study_uid"]):
            annotated, absent = _annotated(_source_of(uid, two)), batch["absent"][row]
            assert torch.all(weight[row][~annotated] == 0.0)  # unknown: no loss, even with the view cut
            assert torch.all(weight[row][annotated & absent] == 0.5)  # annotated and cut away: trained as absent
            assert torch.all(weight[row][annotated & ~absent] == 1.0)
            cut += int((annotated & absent).sum())
    assert cut > 0


def test_what_a_study_does_not_annotate_cannot_change_its_loss(two: tuple[Source, Source]) -> None:
    module, dm = _module_and_data(two, replace(AugmentConfig(), enabled=False))
    module.eval()
    items = [dm.train_dataset[i] for i in range(len(dm.train_dataset))]
    for src in two:
        batch = collate_samples([it for it in items if it["study_uid"] in src.study_uids])
        with torch.no_grad():
            out = module(batch["image"], batch["keypoints"])
            base = module.compute_losses(batch, out)
            unknown = ~_annotated(src)
            changed = {**out, "heatmaps": out["heatmaps"].clone()}
            changed["heatmaps"][:, unknown] += torch.randn_like(changed["heatmaps"][:, unknown])
            after = module.compute_losses(batch, changed)
            assert torch.equal(base["heatmap"], after["heatmap"])
            known = {**out, "heatmaps": out["heatmaps"].clone()}
            known["heatmaps"][:, _annotated(src)] += 1.0
            assert not torch.equal(base["heatmap"], module.compute_losses(batch, known)["heatmap"])
            logits = {k: v + 3.0 * torch.randn_like(v) for k, v in out["grade_logits"].items()}
            moved_grades = module.compute_losses(batch, {**out, "grade_logits": logits})["grade"]
        if src.graded:
            assert float(base["grade"]) > 0 and not torch.equal(base["grade"], moved_grades)
        else:  # every grade of this source is empty: no grade loss, whatever the logits
            assert float(base["grade"]) == 0.0 and float(moved_grades) == 0.0


def _identifications(path: Path) -> dict[str, set[str]]:
    out = {}
    for rec in json.loads(path.read_text()):
        points = [p for img in rec["data"] for ann in img["annotation"] for p in ann["data"]["point"]]
        out[rec["studyUid"]] = {p["tag"]["identification"] for p in points}
    return out


def test_train_on_two_sources_predicts_both_label_sets(
    two: tuple[Source, Source], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two
    run = tmp_path / "run"
    overrides = [f"--{k}={v}" for k, v in TINY_TRAIN.items()]
    assert main(["train", "--config", "demo_cpu", *a.args(), *b.args(), "--out", str(run), *overrides]) == 0
    ckpt = run / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, map_location="cpu", weights_only=False)["hyper_parameters"]
    counts = hparams["label_stats"]["landmark_counts"]
    assert counts["T12"] == 0  # annotated by neither: not trained, never predicted
    assert counts["T12-L1"] == counts["L5-S1"] == 2  # set a's two training studies
    assert counts["L1"] == counts["L4-L5"] == 4  # both sets' training studies
    sources = hparams["config"]["data"]["sources"]
    assert sources == [{"root": str(s.root), "annotations": str(s.annotations)} for s in two]
    assert hparams["config"]["data"]["root"] == ""
    trained = set(SCHEMA.landmarks) - {"T12"}
    for src in two:
        pred = tmp_path / f"{src.root.parent.name}.json"
        # per-channel peaks: every trained landmark is placed, so the test is about what was trained, not the decoder
        argv = ["predict", str(src.root), "--checkpoint", str(ckpt), "-o", str(pred), "--quiet", "--no-level-order"]
        assert main(argv) == 0
        found = _identifications(pred)
        assert set(found) == src.study_uids
        for names in found.values():  # set a's T12-L1 and L5-S1 on set b's studies too; never T12
            assert names == trained, names


def test_unequal_data_and_annotations_is_one_error_line(
    two: tuple[Source, Source], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two
    argv = ["train", *a.args(), "--data", str(b.root), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: 2 --data but 1 --annotations")


def test_the_same_study_in_two_sources_is_one_error_line(
    two: tuple[Source, Source], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two
    dup = tmp_path / "again.json"
    dup.write_text(a.annotations.read_text())
    argv = ["train", *a.args(), "--data", str(a.root), "--annotations", str(dup), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: study ")
    assert str(a.annotations) in err and str(dup) in err and "annotated in both" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
