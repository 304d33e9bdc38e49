"""Atomic versioned publishing: a poller never sees a partial version; no overwrite; --keep."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from polling import eventually

from export.publish import VersionExistsError, latest_version_dir, prune, publish, versions

MARKER = "written-last"


def slow_writer(files: int = 20):
    """Writes files one by one (with pauses), the marker last: a visible partial is caught."""

    def write(folder: Path) -> None:
        for i in range(files):
            (folder / f"part{i}").write_bytes(os.urandom(1024))
            time.sleep(0.005)
        (folder / MARKER).write_text("done")

    return write


def test_poller_never_sees_a_partial_version(tmp_path):
    base = tmp_path / "cifar10"
    seen_partial: list[str] = []
    seen_versions: set[int] = set()
    polls_during_writes = 0
    stop = threading.Event()

    def poll() -> None:  # what TF Serving does: list numeric children, then read them
        nonlocal polls_during_writes
        while not stop.is_set():
            writing = base.exists() and any(p.name.startswith(".tmp") for p in base.iterdir())
            polls_during_writes += writing
            for v in versions(base):
                seen_versions.add(v)
                if not (base / str(v) / MARKER).exists():
                    seen_partial.append(str(v))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for _ in range(3):
            publish(slow_writer(), base)
        # a busy machine may not have run the poller since
        eventually(lambda: 3 in seen_versions, timeout=30, what="the poller seeing version 3")
    finally:
        stop.set()
        poller.join()
    assert versions(base) == [1, 2, 3]
    assert seen_versions == {1, 2, 3}
    assert polls_during_writes > 0  # it listed the folder while a version was being written
    assert seen_partial == []
    assert [p.name for p in base.iterdir() if p.name.startswith(".tmp")] == []


def test_temp_folder_name_is_ignored_by_tf_serving(tmp_path):
    names: list[str] = []
    publish(lambda folder: names.append(folder.name), tmp_path)
    assert names[0].startswith(".tmp-")
    with pytest.raises(ValueError):
        int(names[0])  # TF Serving's SimpleAtoi fails too: not a version


def test_explicit_version_refuses_to_overwrite(tmp_path):
    publish(slow_writer(1), tmp_path, version=5)
    calls: list[Path] = []
    with pytest.raises(VersionExistsError, match="version 5 already exists"):
        publish(calls.append, tmp_path, version=5)
    assert calls == []  # refused before writing anything
    assert versions(tmp_path) == [5]
    assert publish(slow_writer(1), tmp_path).name == "6"


def test_failed_write_leaves_nothing(tmp_path):
    def broken(folder: Path) -> None:
        (folder / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish(broken, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".publish.lock"] == []


def test_a_failure_after_the_rename_is_a_warning_and_the_version_stays(tmp_path, caplog):
    """Once renamed the version is live. A failure to record it (a full disk: the file that
    would replace .last-version points at /dev/full, whose writes fail with ENOSPC) was raised
    as a failed export, and exporting again published the same weights as the next version.
    .last-version itself keeps its number (it was rewritten in place, so could be emptied)."""
    publish(slow_writer(1), tmp_path)
    (tmp_path / "..last-version.tmp").symlink_to("/dev/full")
    with caplog.at_level("WARNING", logger="export.publish"):
        published = publish(slow_writer(1), tmp_path)
    assert published == tmp_path / "2" and (published / MARKER).is_file()
    assert "published" in caplog.text and "No space left on device" in caplog.text
    assert (tmp_path / ".last-version").read_text() == "1\n"


def test_a_keep_that_cannot_prune_is_a_warning_after_the_publish(tmp_path, caplog, monkeypatch):
    """The pruning's failure is played by raising ENOSPC from prune (a real one would need a
    file system that refuses a rename)."""
    import export.publish

    def refuses(base, keep):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export.publish, "prune", refuses)
    with caplog.at_level("WARNING", logger="export.publish"):
        published = publish(slow_writer(1), tmp_path, keep=1)
    assert published == tmp_path / "1" and (published / MARKER).is_file()
    assert "--keep 1 could not remove older versions" in caplog.text


def test_keep_prunes_oldest_versions(tmp_path):
    for _ in range(4):
        publish(slow_writer(1), tmp_path)
    assert publish(slow_writer(1), tmp_path, keep=2).name == "5"
    assert versions(tmp_path) == [4, 5]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deleting")]
    with pytest.raises(ValueError):
        prune(tmp_path, 0)


def test_versions_ignores_non_numeric_children(tmp_path):
    for name in ("1", "0007", ".tmp-1-0", "tmp", "3.5"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file, not a folder")
    assert versions(tmp_path) == [1, 7]


def test_every_name_the_model_server_loads_as_a_version_counts_as_that_version(tmp_path):
    """TF Serving (and the local server) load "+7", " 8" and "009" as versions 7, 8 and 9.
    Publishing must see them the same way: not write a second 7 beside "+7", start numbering
    above 9, and find and prune them under their own names. "٣" is a digit to Python's
    isdigit() and int(), not to absl::SimpleAtoi."""
    for name in ("+7", " 8", "009", "٣"):
        (tmp_path / name).mkdir()
    assert versions(tmp_path) == [7, 8, 9]
    assert latest_version_dir(tmp_path) == tmp_path / "009"
    with pytest.raises(VersionExistsError, match="version 7 already exists"):
        publish(slow_writer(1), tmp_path, version=7)
    assert publish(slow_writer(1), tmp_path, keep=2).name == "10"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "009", "10", "٣"
    ]  # fmt: skip


def test_keep_below_one_is_refused_before_anything_is_published(tmp_path):
    publish(slow_writer(1), tmp_path)
    calls: list[Path] = []
    with pytest.raises(ValueError, match="--keep must be at least 1"):
        publish(calls.append, tmp_path, keep=0)
    assert calls == []  # it once published the version, then refused to prune
    assert versions(tmp_path) == [1]


def test_the_next_number_was_never_used_before(tmp_path):
    """A version rolled back as DEPLOY.md says (renamed to .rollback-N) keeps its number, so a
    pin, a log line or a metric with that number never names a second model; a stray file
    with an integer name is skipped too (the rename onto it failed with a traceback)."""
    for _ in range(3):
        publish(slow_writer(1), tmp_path)
    (tmp_path / "3").rename(tmp_path / ".rollback-3")
    assert publish(slow_writer(1), tmp_path).name == "4"
    (tmp_path / "11").write_text("not a model")
    assert publish(slow_writer(1), tmp_path).name == "12"
    with pytest.raises(VersionExistsError, match="version 11 already exists"):
        publish(slow_writer(1), tmp_path, version=11)
    assert versions(tmp_path) == [1, 2, 4, 12]
    with pytest.raises(VersionExistsError, match="version 3 was rolled back"):
        publish(slow_writer(1), tmp_path, version=3)
    # DEPLOY.md: "delete .rollback-N later"; and a stray file goes: the numbers stay used.
    shutil.rmtree(tmp_path / ".rollback-3")
    (tmp_path / "11").unlink()
    shutil.rmtree(tmp_path / "12")
    assert publish(slow_writer(1), tmp_path).name == "13"
    assert publish(slow_writer(1), tmp_path, version=3).name == "3"  # a deliberate backfill


def test_two_exports_publishing_at_once_get_two_numbers(tmp_path):
    """Two processes (two `make export`s, or the trainer image beside a person) write their
    folders at the same time, then rename: the lock gives each its own next number. The
    window between choosing a number and renaming is microseconds; each child widens it
    with a 0.5 s pause after reading the used numbers (instrumented here, nothing mocked),
    so that without the lock both would choose 1."""
    import subprocess
    import sys

    base, go = tmp_path / "cifar10", tmp_path / "go"
    code = (
        "import sys, time; from pathlib import Path; import export.publish as p\n"
        "used = p.used_numbers\n"
        "p.used_numbers = lambda base: (used(base), time.sleep(0.5))[0]\n"
        "def write(folder):\n"
        "    (folder / 'who').write_text(sys.argv[1])\n"
        "    Path(sys.argv[3], sys.argv[1]).touch()  # in the write phase\n"
        "    while not Path(sys.argv[3], 'go').exists(): time.sleep(0.01)\n"
        "print(p.publish(write, sys.argv[2]).name)\n"
    )
    root = Path(__file__).resolve().parents[2]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", code, name, str(base), str(tmp_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    eventually(lambda: all((tmp_path / name).exists() for name in ("a", "b")), timeout=60,
               what="the two writers in their write phase")  # fmt: skip
    go.touch()  # both folders written: now both rename
    numbers = sorted(w.communicate(timeout=60)[0].strip() for w in writers)
    assert [w.returncode for w in writers] == [0, 0] and numbers == ["1", "2"]
    assert sorted((base / n / "who").read_text() for n in numbers) == ["a", "b"]


def test_what_a_killed_publisher_left_is_swept_and_a_live_ones_work_is_not(tmp_path):
    """An export killed mid-write (kill -9, a stopped container) left its hidden folder in
    the base path for good: megabytes each time, and, with a container's repeated pids, a
    name the next export once tried to make again; so did a prune killed before it deleted.
    Publishers are real subprocesses here."""
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time; from pathlib import Path; from export.publish import publish;"
        "publish(lambda d: ((d / 'part').write_text('x'), time.sleep(120)), sys.argv[1])"
    )
    root = Path(__file__).resolve().parents[2]
    killed, alive = (
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=root) for _ in range(2)
    )
    manual = tmp_path / ".tmp-6"  # DEPLOY.md's hand copy: not the publisher's to remove
    manual.mkdir()
    pruned = tmp_path / ".deleting-3-4242"  # what a prune killed before its rmtree left
    (pruned / "variables").mkdir(parents=True)
    try:

        def work_folders() -> set[str]:
            return {p.name for p in tmp_path.glob(".tmp-*-*") if (p / "part").exists()}

        eventually(work_folders, lambda found: len(found) == 2, 60, "two work folders")
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        left = {p.name for p in tmp_path.glob(f".tmp-{killed.pid}-*")}
        assert len(left) == 1
        assert publish(slow_writer(1), tmp_path).name == "1"
        live = work_folders() - left
        assert len(live) == 1  # the live publisher's folder is kept, and so is the hand copy
        assert {p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")} == {
            ".tmp-6",
            *live,
        }
        assert not pruned.exists()
    finally:
        for child in (killed, alive):
            child.kill()
            child.wait(30)


def test_a_base_path_that_is_a_version_folder_or_the_folder_above_is_refused(tmp_path):
    """`--base-path models/cifar10/1` wrote models/cifar10/1/1, inside the served version;
    `--base-path models` started a model beside cifar10/. Both reported success."""
    from export.publish import check_base_path

    models = tmp_path / "models"
    (models / "cifar10" / "1").mkdir(parents=True)
    (models / "cifar10" / "1" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is a version folder \(it holds saved_model.pb\)"):
        check_base_path(models / "cifar10" / "1")
    with pytest.raises(ValueError, match="holds the version folders of cifar10; name one"):
        check_base_path(models)
    (tmp_path / "empty").mkdir()
    for fine in (models / "cifar10", models / "new-model", tmp_path / "empty"):
        check_base_path(fine)  # a base path, one not made yet, and an empty folder
