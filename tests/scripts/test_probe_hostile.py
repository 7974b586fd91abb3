"""scripts/probe_hostile.py: a handful of hostile cases, each a real ``spine-kp`` subprocess, come out as expected; the
peak RSS is the child's own; and the classification names every failure kind it is meant to catch."""

from __future__ import annotations

import json
from pathlib import Path

from script_loader import load_script

probe = load_script("probe_hostile")

# cheap cases from five classes: a pickle payload, a deflate bomb, lying headers, evaluate refusals, an overwrite guard
HANDFUL = [
    "--only", "pickle,dicom,duplicates,outputs,schema",
    "--match", "ensemble member,inspect: deflate bomb,inspect: rows 0,the same study twice in the ground truth,"
    "swapped,[] as annotations,predict -o = the ground-truth annotations,neither naming its schema",
]  # fmt: skip


def test_a_handful_of_hostile_cases_has_no_failure(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    assert probe.main([*HANDFUL, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    summary = doc["summary"]["all"]
    assert summary["cases"] == summary["run"] == summary["ok"] == 8, doc["rows"]
    assert all(summary[kind] == 0 for kind in probe.KINDS)
    rows = {r["case"]: r for r in doc["rows"]}
    bomb = rows["inspect: deflate bomb (4 GB of zeros in 4 MB) as the annotated slice"]
    assert bomb["exit"] == 0 and 0 < bomb["peak_rss_mib"] < 512  # the 4 GB never materialised
    assert rows["ensemble member"]["exit"] == 2


def test_the_peak_rss_is_the_childs_own_not_this_process(tmp_path: Path) -> None:
    # Linux keeps a peak RSS across fork and exec: a child forked from this process (torch imported) would inherit it
    import torch  # noqa: F401  (this process is now large)

    log = tmp_path / "log"
    log.mkdir()
    result = probe.spawn(["inspect", str(tmp_path / "no_root")], None, 120, log)
    assert (result.code, result.err) == (2, f"error: {tmp_path / 'no_root'}: not a folder\n")
    assert 5 < result.rss_mib < 200 and not result.timed_out


def test_a_case_that_hangs_is_killed_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    plan = probe.Plan(["inspect", str(tmp_path)])
    result = probe.spawn(["inspect", "/dev/stdin"], None, 0.01, log)  # killed long before Python starts up
    assert result.timed_out
    kinds, why = probe.classify(plan, result, tmp_path / "MARKER", [], 2048)
    assert kinds == ["other"] and "timed out" in why


def test_classify_names_each_failure_kind(tmp_path: Path) -> None:
    plan = probe.Plan(["predict"], codes=(2,), text=("refused",))
    marker = tmp_path / "MARKER"

    def kinds(code: int, err: str, rss: float = 100.0, changed: tuple[str, ...] = ()) -> list[str]:
        return probe.classify(plan, probe.Result(code, "", err, rss, 1.0, False), marker, list(changed), 2048)[0]

    assert kinds(2, "error: x.ckpt: refused\n") == []
    assert kinds(0, "") == ["silently wrong"]  # exit 0 where a refusal was expected
    assert kinds(2, "error: x.ckpt: not a spine_kp checkpoint\n") == ["silently wrong"]  # the wrong refusal
    assert kinds(2, "error: refused\nerror: refused again\n") == ["silently wrong"]  # not one error line
    assert kinds(1, "Traceback (most recent call last):\nValueError: refused\n") == ["traceback", "other"]
    assert kinds(2, "error: refused\n", changed=("gt.json",)) == ["silent overwrite"]
    assert kinds(2, "error: refused\n", rss=4096.0) == ["memory"]
    marker.write_text("payload ran")
    assert kinds(2, "error: refused\n") == ["payload ran"]


def test_summary_counts_per_class_and_exit_status_follows_the_failures() -> None:
    rows = [
        probe.Row("pickle", "a", 2, 100.0, 1.0, [], ""),
        probe.Row("pickle", "b", 0, 100.0, 1.0, ["payload ran", "silently wrong"], "marker"),
        probe.Row("onnx", "c", None, None, None, [], "", not_run="onnxruntime not installed"),
    ]
    summary = probe.summarise(rows)
    assert summary["pickle"]["cases"] == 2 and summary["pickle"]["ok"] == 1 and summary["pickle"]["payload ran"] == 1
    assert summary["onnx"]["not run"] == 1 and summary["onnx"]["run"] == 0
    assert summary["all"]["silently wrong"] == 1 and summary["all"]["cases"] == 3
    assert "not run (onnxruntime not installed)" == rows[2].outcome


def test_every_class_of_the_issue_has_several_cases() -> None:
    classes = [c.cls for c in probe.CASES]
    assert len(classes) >= 60
    for cls in ("pickle", "dicom", "onnx", "uids", "formula", "outputs", "schema", "duplicates", "disk", "config"):
        assert classes.count(cls) >= 2, cls
