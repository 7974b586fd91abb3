"""``spine-kp demo`` reruns: an interrupted phantom set (no annotations.json yet) is rewritten, not refused."""

from __future__ import annotations

import pytest

import spine_kp.demo as demo
from spine_kp.engine.config import load_experiment


class _Stop(Exception):
    pass


def test_rerun_after_an_interrupted_synth_rewrites_the_partial_set(tmp_path, monkeypatch):
    partial = tmp_path / "train" / "studies" / "half_written_study"
    partial.mkdir(parents=True)
    (partial / "1.dcm").write_bytes(b"cut short")

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(demo, "train", stop)  # only the synth step is under test
    with pytest.raises(_Stop):
        demo.run_demo(
            load_experiment("demo_cpu"), tmp_path, train_studies=2, test_studies=1, workers=1, log=lambda m: None
        )
    assert (tmp_path / "train" / "annotations.json").exists() and (tmp_path / "test" / "annotations.json").exists()
    assert not partial.exists()


def test_phantoms_are_drawn_in_the_experiment_schema(tmp_path, monkeypatch):
    import json

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(demo, "train", stop)
    cfg = load_experiment("demo_cpu", {"schema": "tianchi"})
    with pytest.raises(_Stop):
        demo.run_demo(cfg, tmp_path, train_studies=2, test_studies=1, workers=1, log=lambda m: None)
    text = (tmp_path / "train" / "annotations.json").read_text()
    assert '"L1"' in text and '"T12"' not in text  # tianchi: L1-L5, no T12
    assert json.loads(text)
