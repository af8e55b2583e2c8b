"""Crash-safe storage for the node's TOML files (cluster.toml, node.toml).

Every write goes to a temporary file in the target's own directory, is
fsynced, renamed over the target and then the directory itself is fsynced.
A rename within one filesystem is atomic, so after a crash at any point the
target holds either the complete old bytes or the complete new bytes; the
directory fsync makes the rename itself durable.  A crash can leave a temp
file behind, which ``remove_stale_temp_files`` clears at start-up.

Before ``cluster.toml`` is replaced, its current content is kept as a
generation under ``backups/`` so an operator can roll back.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from ..atomic import atomic_write, remove_stale_temp_files

__all__ = [
    "StoreError",
    "atomic_write",
    "remove_stale_temp_files",
    "read_bytes",
    "Generations",
    "TomlFile",
]

class StoreError(Exception):
    """A stored file is missing, unreadable or invalid; the message names it."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def _read(path: Path, missing_hint: str = "") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist{missing_hint}.", path) from None
    except OSError as err:
        reason = err.strerror or str(err)
        raise StoreError(f"{path} cannot be read: {reason}.", path) from err


def read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into a StoreError naming it."""
    return _read(Path(path))


class Generations:
    """Backups of one file under a folder: backups/<stem>.<epoch>.<version>.toml, newest `keep` kept.

    ``directory`` is the backups folder itself (normally ``<home>/backups``);
    it is created on the first save.  Other entries in it are left alone.
    """

    def __init__(self, directory: Path, stem: str = "cluster", keep: int = 20) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.directory = Path(directory)
        self.stem = stem
        self.keep = keep
        self._pattern = re.compile(rf"{re.escape(stem)}\.(\d+)\.(\d+)\.toml")

    def save(self, data: bytes, epoch: int, version: int) -> Path:
        if epoch < 0 or version < 0:
            raise ValueError("epoch and version must be non-negative")
        # Backups carry the same cluster config as the live file: owner only.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{self.stem}.{epoch}.{version}.toml"
        atomic_write(target, data)
        self.prune()
        return target

    def list(self) -> list[tuple[int, int, Path]]:
        """All generations, newest first, ordered numerically by (epoch, version)."""
        found: list[tuple[int, int, Path]] = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return found
        for name in names:
            match = self._pattern.fullmatch(name)
            if match:
                found.append((int(match[1]), int(match[2]), self.directory / name))
        # Numeric sort: lexical order would put version 10 before 9, and
        # mtimes are unreliable after copies or restores.
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return found

    def latest(self) -> tuple[int, int, Path] | None:
        generations = self.list()
        return generations[0] if generations else None

    def prune(self) -> list[Path]:
        removed: list[Path] = []
        for _epoch, _version, path in self.list()[self.keep:]:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path)
        return removed


class TomlFile:
    """One TOML file with atomic replacement and generation backups."""

    def __init__(self, path: Path, backups: Generations | None = None) -> None:
        self.path = Path(path)
        self.backups = backups

    def load(self) -> dict:
        raw = _read(self.path, " (run `mft init` to create it)")
        return self._parse(raw)

    def _parse(self, raw: bytes) -> dict:
        # An empty file is what a non-atomic writer leaves after a crash; we
        # never write one, so treat it as damage rather than an empty config.
        if not raw.strip():
            raise StoreError(f"{self.path} is empty.", self.path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StoreError(f"{self.path}: not valid UTF-8: {err}.", self.path) from err
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise StoreError(f"{self.path}: not valid TOML: {err}", self.path) from err

    def replace(self, data: bytes, epoch: int | None = None, version: int | None = None,
                *, current: tuple[bytes, int, int] | None = None) -> None:
        """Atomically replace the file with ``data``, first backing up the current content.

        ``epoch``/``version``, when given, must match the top-level keys of
        ``data``; this catches a caller writing a document other than the one
        it meant to. ``current`` is what the caller believes the file holds (its bytes,
        epoch and version): when the file holds exactly those bytes, the backup is named
        without parsing it again, which for a large document is most of a write's cost.
        """
        if epoch is not None or version is not None:
            new = tomllib.loads(data.decode("utf-8"))
            for key, expected in (("epoch", epoch), ("version", version)):
                if expected is not None and new.get(key) != expected:
                    raise ValueError(
                        f"new {self.path.name} has {key}={new.get(key)!r}, expected {expected}"
                    )
        if self.backups is not None:
            self._backup_current(current)
        atomic_write(self.path, data)

    def _backup_current(self, believed: tuple[bytes, int, int] | None) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        if believed is not None and raw == believed[0]:
            self.backups.save(raw, believed[1], believed[2])
            return
        try:
            current = self._parse(raw)
        except StoreError:
            # Keeping a damaged file as a "good" generation would make it a
            # rollback target; the new write repairs the live file instead.
            return
        cur_epoch, cur_version = current.get("epoch"), current.get("version")
        if _is_count(cur_epoch) and _is_count(cur_version):
            self.backups.save(raw, cur_epoch, cur_version)


def _is_count(value: object) -> bool:
    # bool is an int subclass; `epoch = true` is not a generation number.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
