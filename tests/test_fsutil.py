"""Atomic writes: results get the umask's mode (a shared cache stays readable), failures leave nothing."""

from __future__ import annotations

import os
import stat

import pytest

from delift import fsutil
from delift.fsutil import atomic_folder, atomic_write, current_umask, discard_folder


@pytest.fixture
def set_umask():
    """Set the process umask for one test; the old one is restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask,file_mode,folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                          (0o002, 0o664, 0o775)],
                         ids=["umask022", "umask077", "umask002"])
def test_modes_follow_the_umask(tmp_path, set_umask, umask, file_mode, folder_mode):
    set_umask(umask)
    written = atomic_write(tmp_path / "cache" / "entry.json", lambda handle: handle.write(b"{}"))
    assert written.read_bytes() == b"{}" and mode(written) == file_mode
    atomic_write(written, lambda handle: handle.write(b"[]"))  # replacing a file: same rule
    assert written.read_bytes() == b"[]" and mode(written) == file_mode

    folder = atomic_folder(tmp_path / "models" / "m", lambda tmp: (tmp / "config.json").write_text("{}"))
    assert mode(folder) == folder_mode and mode(folder / "config.json") == file_mode
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]
    assert current_umask() == umask and os.umask(umask) == umask  # reading it changed nothing


def test_umask_fallback_without_proc(tmp_path, set_umask, monkeypatch):
    monkeypatch.setattr(fsutil, "_PROC_STATUS", tmp_path / "no-such-file")
    set_umask(0o027)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # restored after the os.umask(0) read
    assert mode(atomic_write(tmp_path / "f", lambda handle: handle.write(b"x"))) == 0o640


def test_atomic_write_leaves_nothing_when_the_writer_raises(tmp_path):
    def half_then_fail(handle):
        handle.write(b"half a file")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(tmp_path / "entry.json", half_then_fail)
    assert list(tmp_path.iterdir()) == []  # no target, no temporary sibling

    target = atomic_write(tmp_path / "entry.json", lambda handle: handle.write(b"old"))
    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_atomic_folder_leaves_nothing_when_build_raises(tmp_path):
    def build(tmp):
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        atomic_folder(tmp_path / "m", build)
    assert list(tmp_path.iterdir()) == []


def test_discard_folder_removes_it_and_tolerates_a_missing_one(tmp_path):
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights").write_bytes(b"\0" * 16)
    discard_folder(folder)
    assert list(tmp_path.iterdir()) == []
    discard_folder(folder)  # already gone (another process was first): fine
    assert list(tmp_path.iterdir()) == []
