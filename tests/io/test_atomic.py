from __future__ import annotations

import pytest

from spine_kp.io.atomic import atomic_output, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "out.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [f.name for f in p.parent.iterdir()] == ["out.json"]


def test_interrupted_write_keeps_old_file_and_no_partial(tmp_path):
    p = tmp_path / "out.json"
    p.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(p) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["out.json"]


def test_outputs_get_normal_permissions(tmp_path):
    import os

    p = atomic_write_text(tmp_path / "x.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
