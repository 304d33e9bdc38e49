"""The soak's file check can see what it is meant to see: a write by one of our child
processes outside the allowed folder, and not one inside it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.soak_files import WriteWatcher
from bench.soak_stack import watched_roots
from tests.conftest import HOST_LIMIT


def has_cap_sys_admin() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (bit 21 of CapEff) in the initial user
    namespace, which fanotify needs: in a rootless container CapEff shows it, and
    fanotify_init still answers EPERM."""
    initial = Path("/proc/self/uid_map").read_text().split() == ["0", "0", "4294967295"]
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return initial and bool(int(line.split()[1], 16) >> 21 & 1)
    return False


def test_a_childs_write_outside_the_run_folder_is_reported(tmp_path) -> None:
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    run_dir.mkdir()
    outside.mkdir()
    watcher = WriteWatcher(watched_roots(), (run_dir,)).start()
    if not watcher.available:
        watcher.stop()
        # Decided from /proc, not by the watcher: a watcher that broke would skip, unseen.
        assert not has_cap_sys_admin(), "fanotify is allowed here, but the watcher is off"
        pytest.skip(f"{HOST_LIMIT} watch writes (fanotify needs CAP_SYS_ADMIN)")
    script = (f"open({str(outside / 'stray.txt')!r}, 'w').write('x');"
              f"open({str(run_dir / 'fine.txt')!r}, 'w').write('x')")  # fmt: skip
    subprocess.run([sys.executable, "-c", script], check=True)
    time.sleep(0.5)  # let the reader thread drain the events
    written = watcher.stop()
    assert str(outside / "stray.txt") in written
    assert str(run_dir / "fine.txt") not in written


def test_the_snapshot_fallback_reports_a_write_outside_the_run_folder_only() -> None:
    """Where fanotify is not allowed (the test above skips), the soak compares two snapshots
    of the watched folders; it must see a stray write and a changed file, and not one inside
    the excluded run folder. (Not under pytest's tmp_path: the snapshot passes over other
    pytest runs' folders, FOREIGN_WRITERS.)"""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="soak-snapshot-test-") as folder:
        _check_snapshot(Path(folder))


def _check_snapshot(root: Path) -> None:
    from bench.soak_stack import FileSnapshot

    run_dir, outside = root / "run", root / "outside"
    run_dir.mkdir()
    outside.mkdir()
    (outside / "kept.txt").write_text("old")
    before = FileSnapshot.take([root], [run_dir])
    (outside / "stray.txt").write_text("x")
    (outside / "kept.txt").write_text("changed")
    (run_dir / "fine.txt").write_text("x")
    after = FileSnapshot.take([root], [run_dir])
    assert after.changed_since(before) == [str(outside / "kept.txt"), str(outside / "stray.txt")]
