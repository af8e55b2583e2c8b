import os
import random
import stat
from pathlib import Path

import pytest

from tui.node import store
from tui.node.store import (
    Generations,
    StoreError,
    TomlFile,
    atomic_write,
    read_bytes,
    remove_stale_temp_files,
)


def temp_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".tmp-" in p.name)


def doc(epoch: int, version: int, body: str = "") -> bytes:
    return f"epoch = {epoch}\nversion = {version}\n{body}".encode()


# -- atomic_write ------------------------------------------------------------


def test_atomic_write_creates_file_0600_without_leftovers(tmp_path):
    target = tmp_path / "cluster.toml"
    atomic_write(target, b"a = 1\n")
    assert target.read_bytes() == b"a = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert temp_files(tmp_path) == []


def test_atomic_write_mode_ignores_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_atomic_write_replaces_existing_content(tmp_path):
    target = tmp_path / "node.toml"
    atomic_write(target, b"old = 1\n")
    atomic_write(target, b"new = 2\n" * 10_000)
    assert target.read_bytes() == b"new = 2\n" * 10_000
    assert temp_files(tmp_path) == []


def test_failed_replace_keeps_old_content_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "cluster.toml"
    atomic_write(target, b"old = 1\n")
    seen = []

    def failing_replace(src, dst):
        seen.append(Path(src))
        assert Path(src).read_bytes() == b"new = 2\n"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new = 2\n")

    assert target.read_bytes() == b"old = 1\n"
    assert seen and seen[0].parent == tmp_path
    assert seen[0].name.startswith(".cluster.toml.tmp-")
    assert temp_files(tmp_path) == []


def test_failed_write_removes_temp(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "cluster.toml", b"a = 1\n")
    assert list(tmp_path.iterdir()) == []


# -- remove_stale_temp_files -------------------------------------------------


def test_remove_stale_temp_files(tmp_path):
    stale = [tmp_path / ".cluster.toml.tmp-1a2b", tmp_path / ".node.toml.tmp-ff"]
    keep = [tmp_path / "cluster.toml", tmp_path / "node.toml.tmp-notours", tmp_path / ".hidden"]
    for p in stale + keep:
        p.write_bytes(b"x")
    (tmp_path / ".dir.tmp-1").mkdir()

    removed = remove_stale_temp_files(tmp_path)

    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert (tmp_path / ".dir.tmp-1").is_dir()


def test_remove_stale_temp_files_missing_directory(tmp_path):
    assert remove_stale_temp_files(tmp_path / "nope") == []


# -- read_bytes --------------------------------------------------------------


def test_read_bytes_missing(tmp_path):
    path = tmp_path / "cluster.toml"
    with pytest.raises(StoreError, match="does not exist") as info:
        read_bytes(path)
    assert str(path) in str(info.value)


def test_read_bytes_unreadable(tmp_path):
    with pytest.raises(StoreError, match="cannot be read: ") as info:
        read_bytes(tmp_path)  # a directory
    assert str(tmp_path) in str(info.value)


# -- Generations -------------------------------------------------------------


def test_generations_keep_20_newest_by_epoch_then_version(tmp_path):
    gens = Generations(tmp_path / "backups")
    # Epoch 2 restarts its versions below epoch 1's: the epoch must dominate,
    # and versions 9/10 and 25/16 only sort right numerically.
    saved = [(1, v) for v in range(1, 26)] + [(2, v) for v in range(1, 11)]
    for epoch, version in random.Random(7).sample(saved, len(saved)):
        gens.save(doc(epoch, version), epoch, version)

    expected = [(2, v) for v in range(10, 0, -1)] + [(1, v) for v in range(25, 15, -1)]
    listed = gens.list()
    assert [(e, v) for e, v, _ in listed] == expected
    assert len(list(gens.directory.iterdir())) == 20
    assert gens.latest()[:2] == (2, 10)
    assert listed[0][2] == tmp_path / "backups" / "cluster.2.10.toml"
    assert listed[0][2].read_bytes() == doc(2, 10)


def test_generations_numeric_order_not_lexical(tmp_path):
    gens = Generations(tmp_path / "backups", keep=2)
    for version in (9, 10, 8):
        gens.save(doc(1, version), 1, version)
    assert [v for _, v, _ in gens.list()] == [10, 9]
    assert not (gens.directory / "cluster.1.8.toml").exists()


def test_generations_epoch_dominates_version(tmp_path):
    gens = Generations(tmp_path / "backups", keep=1)
    gens.save(doc(1, 500), 1, 500)
    gens.save(doc(2, 1), 2, 1)
    assert [(e, v) for e, v, _ in gens.list()] == [(2, 1)]
    # An older generation saved late is pruned at once.
    gens.save(doc(1, 999), 1, 999)
    assert [(e, v) for e, v, _ in gens.list()] == [(2, 1)]


def test_generations_ignore_foreign_files_and_other_stems(tmp_path):
    gens = Generations(tmp_path / "backups", stem="cluster", keep=1)
    gens.save(b"a = 1\n", 1, 1)
    for name in ("node.1.5.toml", "cluster.x.1.toml", "cluster.1.2.toml.bak", "README"):
        (gens.directory / name).write_bytes(b"")
    (gens.directory / ".cluster.1.3.toml.tmp-ab").write_bytes(b"")
    (gens.directory / "replaced-1").mkdir()  # where `mft init --force` sets old files aside
    gens.save(b"a = 2\n", 1, 2)
    assert [(e, v) for e, v, _ in gens.list()] == [(1, 2)]
    assert (gens.directory / "node.1.5.toml").exists()


def test_generations_dir_created_0700_and_files_0600(tmp_path):
    gens = Generations(tmp_path / "backups")
    assert gens.list() == [] and gens.latest() is None
    path = gens.save(b"a = 1\n", 3, 4)
    assert path == tmp_path / "backups" / "cluster.3.4.toml"
    assert stat.S_IMODE(gens.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generations_prune_returns_removed(tmp_path):
    gens = Generations(tmp_path / "backups", keep=20)
    for version in range(1, 6):
        gens.save(b"", 1, version)
    gens.keep = 3
    removed = gens.prune()
    assert sorted(p.name for p in removed) == ["cluster.1.1.toml", "cluster.1.2.toml"]


# -- TomlFile ----------------------------------------------------------------


def test_replace_backs_up_previous_content(tmp_path):
    gens = Generations(tmp_path / "backups")
    f = TomlFile(tmp_path / "cluster.toml", gens)
    f.replace(doc(3, 9, 'name = "first"\n'))
    assert gens.list() == []  # nothing to back up yet

    f.replace(doc(3, 10, 'name = "second"\n'))
    assert f.load() == {"epoch": 3, "version": 10, "name": "second"}
    [(epoch, version, path)] = gens.list()
    assert (epoch, version) == (3, 9)
    assert path == tmp_path / "backups" / "cluster.3.9.toml"
    assert path.read_bytes() == doc(3, 9, 'name = "first"\n')
    assert temp_files(tmp_path) == []


def test_replace_skips_backup_without_epoch_version(tmp_path):
    gens = Generations(tmp_path / "backups")
    f = TomlFile(tmp_path / "cluster.toml", gens)
    f.replace(b'name = "x"\n')
    f.replace(doc(1, 1))
    assert gens.list() == []


def test_replace_skips_backup_of_invalid_current_file(tmp_path):
    gens = Generations(tmp_path / "backups")
    path = tmp_path / "cluster.toml"
    path.write_bytes(b"epoch = 1\nversion = 2\n[broken\n")
    TomlFile(path, gens).replace(doc(1, 3))
    assert gens.list() == []
    assert TomlFile(path).load() == {"epoch": 1, "version": 3}


def test_replace_trusts_what_the_caller_knows_only_if_the_file_holds_it(tmp_path):
    gens = Generations(tmp_path / "backups")
    path = tmp_path / "cluster.toml"
    f = TomlFile(path, gens)
    first = doc(2, 5, 'name = "first"\n')
    f.replace(first)
    # The caller knows the file holds ``first`` at (2, 5): the backup is named from that,
    # even though this body would say otherwise if it were parsed.
    path.write_bytes(first)
    f.replace(doc(2, 6), current=(first, 2, 7))
    assert [(e, v) for e, v, _ in gens.list()] == [(2, 7)]
    # Someone edited the file behind the node's back: what it really holds is parsed.
    path.write_bytes(doc(2, 8, 'name = "by hand"\n'))
    f.replace(doc(2, 9), current=(doc(2, 6), 2, 6))
    assert sorted((e, v) for e, v, _ in gens.list()) == [(2, 7), (2, 8)]
    assert (tmp_path / "backups" / "cluster.2.8.toml").read_bytes().endswith(b'"by hand"\n')


def test_replace_without_backups(tmp_path):
    f = TomlFile(tmp_path / "node.toml")
    f.replace(b"a = 1\n")
    f.replace(b"a = 2\n")
    assert f.load() == {"a": 2}
    assert not (tmp_path / "backups").exists()


def test_replace_checks_given_epoch_and_version(tmp_path):
    f = TomlFile(tmp_path / "cluster.toml")
    f.replace(doc(2, 7), epoch=2, version=7)
    with pytest.raises(ValueError, match="version"):
        f.replace(doc(2, 8), epoch=2, version=9)
    assert f.load()["version"] == 7


def test_load_malformed_names_file_and_line(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_bytes(b'epoch = 1\nversion = 2\nname = "unterminated\n')
    with pytest.raises(StoreError) as info:
        TomlFile(path).load()
    message = str(info.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in message
    assert info.value.path == path


def test_load_torn_file(tmp_path):
    # The first half of a valid document, as a non-atomic writer might leave it.
    path = tmp_path / "cluster.toml"
    path.write_bytes(b'epoch = 1\nversion = 2\n[peers]\nname = "nod')
    with pytest.raises(StoreError, match="not valid TOML") as info:
        TomlFile(path).load()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("raw, reason", [(b"", "is empty"), (b"\xff\xfe = 1\n", "not valid UTF-8")])
def test_load_empty_or_binary(tmp_path, raw, reason):
    path = tmp_path / "cluster.toml"
    path.write_bytes(raw)
    with pytest.raises(StoreError, match=reason) as info:
        TomlFile(path).load()
    assert str(path) in str(info.value)


def test_load_missing_file_hints_init(tmp_path):
    path = tmp_path / "cluster.toml"
    with pytest.raises(StoreError) as info:
        TomlFile(path).load()
    message = str(info.value)
    assert str(path) in message
    assert "does not exist" in message
    assert "mft init" in message
