"""``spine-kp review`` on the command line: a real server on a free port, its URL line, the token, SIGTERM; and the
paths it refuses before serving."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from review_data import make_predictions, tree_digest

from spine_kp.cli.main import main


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"X-Review-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serves_on_a_free_port_with_the_printed_token_and_stops_on_sigterm(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    before = tree_digest(synth_root / "studies", pred)
    out = tmp_path / "out" / "REVIEWED.json"
    args = [str(synth_root / "studies"), "--predictions", str(pred), "--out", str(out), "--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spine_kp", "review", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("review: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split(" ", 1)[1]
        base, token = url.split("/?token=")
        assert int(base.rsplit(":", 1)[1]) > 0 and len(token) >= 16
        assert proc.stdout.readline().startswith("review: 5 studies (0 reviewed, 0 skipped)")
        status, listed = _get(f"{base}/api/studies", token)
        assert status == 200 and listed["total"] == 5
        status, refused = _get(f"{base}/api/studies")
        assert status == 403 and "token" in refused["error"]
        assert _get(f"{base}/api/studies", "x" + token)[0] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode is not None
    assert out.with_name("REVIEWED.journal.jsonl").exists()
    assert tree_digest(synth_root / "studies", pred) == before


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("PRED", [], "--out {pred} is the --predictions input and would be overwritten"),
        ("ROOT/REVIEWED.json", [], "--out {root}/REVIEWED.json lies inside ROOT"),
        ("REVIEWED.json", ["--port", "70000"], "--port must be 0 (a free port) to 65535, got 70000"),
        ("REVIEWED.json", ["--radius", "0"], "--radius must be positive, got 0.0"),
    ],
)
def test_refuses_paths_and_values_before_serving(synth_root, tmp_path, capsys, out, extra, message) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    root = synth_root / "studies"
    out_path = str(pred) if out == "PRED" else out.replace("ROOT", str(root))
    if out == "REVIEWED.json":
        out_path = str(tmp_path / out)
    before = tree_digest(root, pred)
    code = main(["review", str(root), "--predictions", str(pred), "--out", out_path, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {message.format(pred=pred, root=root)}") and "\n" not in err
    assert tree_digest(root, pred) == before and not (tmp_path / "REVIEWED.journal.jsonl").exists()
