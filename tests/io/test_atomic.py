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


def test_an_unwritable_folder_is_named_instead_of_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".out.json.x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        atomic_write_text(tmp_path / "out.json", "{}")
    assert info.value.filename == str(tmp_path)


def test_check_writable_fails_before_any_work(tmp_path, monkeypatch):
    import os

    from spine_kp.io.atomic import check_writable

    afile = tmp_path / "afile"
    afile.write_text("x")
    check_writable(tmp_path / "new" / "deeper" / "out.json")  # creatable: no error, nothing created
    check_writable(afile)  # an existing file may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    with pytest.raises(NotADirectoryError) as info:
        check_writable(afile / "out.json")
    assert info.value.filename == str(afile)
    with pytest.raises(NotADirectoryError):
        check_writable(afile, folder=True)
    with pytest.raises(IsADirectoryError):
        check_writable(tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError) as info:
        check_writable(tmp_path / "sub" / "out.json")
    assert info.value.filename == str(tmp_path)
