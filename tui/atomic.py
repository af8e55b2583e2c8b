"""Crash-safe file replacement, shared by the node's store and the console's own files.

The temporary file lives in the target's own directory, is fsynced, renamed over the
target, and then the directory itself is fsynced: after a crash at any point the target
holds either the complete old bytes or the complete new bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The names atomic_write gives its temp files: f".{name}.tmp-<random>".
_TEMP_NAME = re.compile(r"\..+\.tmp-.+")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never a mix."""
    path = Path(path)
    # Same directory as the target: os.replace is only atomic within one filesystem.
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        try:
            # open() applies the umask to `mode`; callers ask for an exact mode.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # Data must be on disk before the rename publishes it, or a crash
            # could leave a renamed but empty file.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temp files a crashed ``atomic_write`` left in ``directory``; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and _TEMP_NAME.fullmatch(entry.name):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed
