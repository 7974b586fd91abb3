"""No file in a data root can hang a scan: named pipes, devices, sockets and looping or dangling links are skipped
with a reason, without being opened, and the studies beside them are scanned and predicted."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fuzz_phantoms import Phantoms, TinyPredictor, accounted_files, all_files, check_run, write_phantom_root

from spine_kp.io.dicom import scan
from spine_kp.predict.runner import PredictOptions, predict_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="named pipes, devices and sockets of POSIX")


class Expired(BaseException):
    """Raised in the main thread at the deadline; a BaseException, so that no ``except Exception`` (nor the
    ``except OSError`` a file reader has) swallows it."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``.

    A timer thread kills the scan's worker processes and signals the main thread itself, so that an open() blocked
    there returns (a plain alarm may be delivered to any thread: torch's, faulthandler's).
    """
    expired = threading.Event()

    def fire() -> None:
        expired.set()
        for child in multiprocessing.active_children():  # scan workers stuck in open(): the pool can shut down
            child.kill()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def expire(signum, frame):
        raise Expired(f"still running after {seconds} s: something waits on a special file")

    before = signal.signal(signal.SIGUSR1, expire)
    timer = threading.Timer(seconds, fire)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, before)
    assert not expired.is_set(), "the deadline expired"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Phantoms, dict[str, str]]]:
    """The phantom root with special files in a study folder and at its top; -> (root, studies, name -> category)."""
    root = tmp_path_factory.mktemp("special")
    studies = write_phantom_root(root)
    study = studies["native"].folder
    os.mkfifo(study / "pipe")
    os.mkfifo(root / "pipe.dcm")
    (study / "null").symlink_to("/dev/null")
    (root / "zero").symlink_to("/dev/zero")
    (study / "loop_a").symlink_to(study / "loop_b")
    (study / "loop_b").symlink_to(study / "loop_a")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "self").symlink_to(root)  # a folder loop: walked as a link, never followed
    expected = {"pipe": "not a regular file", "pipe.dcm": "not a regular file", "null": "not a regular file",
                "zero": "not a regular file", "loop_a": "broken link", "loop_b": "broken link",
                "dangling": "broken link"}  # fmt: skip
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))  # AF_UNIX paths are short; a long temporary path may not fit
        expected["sock"] = "not a regular file"
    except OSError:
        pass
    yield root, studies, expected
    sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_special_files_are_skipped_with_their_kind_and_never_opened(root, workers: int) -> None:
    path, studies, expected = root
    with deadline(20):
        result = scan(path, workers=workers)
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    for name, category in expected.items():
        assert reasons[name].startswith(f"{category}: "), (name, reasons.get(name))
    assert reasons["pipe"] == "not a regular file: named pipe"
    assert reasons["null"] == "not a regular file: character device"
    assert "symbolic link loop" in reasons["loop_a"]
    assert accounted_files(result) == all_files(path)
    assert {s.study_uid for s in studies.values()} == set(result.studies)
    assert all(len(series.instances) > 1 for s in result.studies.values() for series in s.series)


def test_prediction_next_to_special_files(root) -> None:
    path, studies, expected = root
    predictor = TinyPredictor()
    with deadline(60):
        run = predict_folder(path, predictor, PredictOptions(workers=2, progress=False))
    assert {p.slice.study_uid for p in run.predictions} == {s.study_uid for s in studies.values()}
    assert not run.failures
    skipped = {Path(p).name for p, _ in run.skipped_files}
    assert set(expected) <= skipped
    check_run(run, scan(path), path, predictor)
