"""The admin port's `sftp` subsystem: a read-only view of node.toml, cluster.toml and backups/.

Admins can fetch the configuration and its generations with any SFTP client. Keys
are not part of the view, nothing can be written, renamed or removed, and the TOML
files are served with password hashes and private keys redacted, as `config.get` does.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import AsyncIterator

import asyncssh
from asyncssh import SFTPAttrs, SFTPName

from ..model.codec import CLUSTER_FILE, NODE_FILE, redact_toml
from .home import BACKUPS_DIR

_VISIBLE_TOP = {NODE_FILE.encode(), CLUSTER_FILE.encode(), BACKUPS_DIR.encode()}
_WRITE_FLAGS = (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
                | asyncssh.FXF_APPEND)


def _visible(relative: bytes) -> bool:
    """Is this chroot-relative, normalised path part of the view?"""
    parts = [p for p in relative.split(b"/") if p]
    if not parts:
        return True
    if parts[0] not in _VISIBLE_TOP:
        return False
    if parts[0] == BACKUPS_DIR.encode():
        return len(parts) == 1 or (len(parts) == 2 and parts[1].endswith(b".toml"))
    return len(parts) == 1


class _RedactedFile:
    """An open file of the view: the redacted text, held in memory (configs are small)."""

    def __init__(self, data: bytes, attrs: SFTPAttrs):
        self.data = data
        self.attrs = attrs


def _redacted(local_path: bytes) -> _RedactedFile:
    with open(local_path, "rb") as f:
        attrs = SFTPAttrs.from_local(os.fstat(f.fileno()))
        data = redact_toml(f.read())
    attrs.size = len(data)
    return _RedactedFile(data, attrs)


def _read_only() -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied("the configuration view is read-only")


class ConfigView(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel, home: bytes):
        super().__init__(chan, chroot=home)
        self._real_home = os.path.realpath(home)

    def exit(self) -> None:
        # End the channel with an exit status: OpenSSH's scp (SFTP mode) reports a
        # failure when the channel closes without one.
        self.channel.exit(0)

    def map_path(self, path: bytes) -> bytes:
        relative = posixpath.normpath(posixpath.join(b"/", path)).lstrip(b"/")
        if not _visible(relative):
            raise asyncssh.SFTPNoSuchFile("not part of the configuration view")
        local = super().map_path(path)
        # The chroot is lexical: a symlink planted in the home could still point out of it.
        real = os.path.realpath(local)
        if real != self._real_home and not real.startswith(self._real_home + b"/"):
            raise asyncssh.SFTPNoSuchFile("not part of the configuration view")
        return local

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        if pflags & _WRITE_FLAGS:
            raise _read_only()
        local = self.map_path(path)
        if os.path.isdir(local):
            raise asyncssh.SFTPFailure("is a folder")
        return _redacted(local)

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _RedactedFile)
        return file_obj.data[offset:offset + size]

    def close(self, file_obj: object) -> None:
        return None

    def fstat(self, file_obj: object) -> SFTPAttrs:
        assert isinstance(file_obj, _RedactedFile)
        return file_obj.attrs

    def stat(self, path: bytes) -> object:
        local = self.map_path(path)
        return _redacted(local).attrs if os.path.isfile(local) else super().stat(path)

    def lstat(self, path: bytes) -> object:
        return self.stat(path)  # the view has no links of its own

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        relative = posixpath.normpath(posixpath.join(b"/", path)).lstrip(b"/")
        async for entry in super().scandir(path):
            name = entry.filename
            name = name if isinstance(name, bytes) else name.encode()
            if name in (b".", b".."):
                yield entry
            elif _visible(posixpath.join(relative, name)):
                local = self.map_path(posixpath.join(path, name))
                if os.path.isfile(local):
                    entry.attrs = _redacted(local).attrs
                yield entry

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> object:
        raise asyncssh.SFTPOpUnsupported("use SFTP version 3")

    # Every operation that could change the filesystem is refused outright.
    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        raise _read_only()

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        raise _read_only()

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        raise _read_only()

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        raise _read_only()

    def remove(self, path: bytes) -> None:
        raise _read_only()

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        raise _read_only()

    def rmdir(self, path: bytes) -> None:
        raise _read_only()

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()
