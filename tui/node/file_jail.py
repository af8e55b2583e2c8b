"""A file user's SFTP view: their home folder is the root, and nothing outside it is reachable.

The chroot asyncssh offers is lexical: `..` is folded away, but a symlink that already
points outside (planted on the shared filesystem, or one to a sibling user's home) would be
followed. Every path is therefore resolved and must stay inside the home; only the last
component may be a link when the operation acts on the link itself (lstat, readlink,
remove, rename).

Uploads are written to a hidden part file in the same folder and renamed over the target
when the client closes it, so a reader on another node never sees half a file; an upload
cut off by a lost connection leaves the target untouched and its part file removed. The
part is on disk before the rename: written behind the upload as it arrives (in a thread,
every ``WRITE_BEHIND`` bytes), so the close waits only for the tail.
"""

from __future__ import annotations

import asyncio
import errno
import io
from concurrent.futures import Future, ThreadPoolExecutor
import os
import posixpath
import secrets
from collections.abc import Callable
from typing import Any

import asyncssh
from asyncssh import SFTPAttrs

PART_PREFIX = b".mft-part-"
MAX_READ = 256 * 1024
WRITE_BEHIND = 8 * 1024 * 1024  # an upload's bytes between flushes to disk while it arrives
# Disk flushes of uploads, off the event loop; a few threads are enough to keep the disks busy.
_FLUSHES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mft-upload-flush")
_WRITE_FLAGS = (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
                | asyncssh.FXF_APPEND)

# (event, path, bytes, result) for the audit log and the session's counters.
TransferHook = Callable[[str, str, int, str], None]


def _tamed(attrs: SFTPAttrs) -> SFTPAttrs:
    """What a user may set: times and the rwx bits. Never an owner (the node may run as
    root), never setuid, setgid or sticky bits."""
    attrs.uid = attrs.gid = None
    attrs.owner = attrs.group = None
    if attrs.permissions is not None:
        attrs.permissions &= 0o777
    return attrs


def _outside() -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied("outside your home folder")


def _read_only() -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied("this account is read-only")


class _Transfer(io.FileIO):
    """An open file that counts its bytes; an upload also knows where it lands."""

    def __init__(self, local: bytes, mode: str, shown: str, final: bytes | None = None):
        super().__init__(local, mode)
        self.shown = shown  # the path as the user sees it
        self.final = final  # where a part file is renamed to when the upload completes
        self.read_bytes = 0
        self.written_bytes = 0
        self.failed = False
        self._unflushed = 0
        self._flushing: Future[None] | None = None

    def wrote(self, count: int) -> None:
        self.written_bytes += count
        self._unflushed += count
        if self._unflushed >= WRITE_BEHIND and (self._flushing is None
                                                or self._flushing.done()):
            self._unflushed = 0
            self._flush_behind()

    def _flush_behind(self) -> None:
        # On a duplicate of the descriptor, which the thread closes: the file may be closed
        # (an upload discarded) while the flush runs, and its number reused by another.
        previous, fd = self._flushing, os.dup(self.fileno())
        self._flushing = _FLUSHES.submit(_sync_and_close, os.fdatasync, fd)
        if previous is not None and previous.exception() is not None:
            self.failed = True  # the kernel reports a lost write once: keep it

    async def on_disk(self) -> None:
        """Every byte written so far is on disk; OSError when one could not be written."""
        if self._flushing is not None:
            try:
                await asyncio.wrap_future(self._flushing)
            except OSError:
                self.failed = True
        fd = os.dup(self.fileno())  # the file may be closed (the node stopping) meanwhile
        await asyncio.get_running_loop().run_in_executor(_FLUSHES, _sync_and_close, os.fsync,
                                                          fd)
        if self.failed:
            raise OSError(errno.EIO, "a write to disk failed")


def _sync_and_close(sync: Callable[[int], None], fd: int) -> None:
    """``sync`` (fdatasync behind the transfer, fsync at its end) a duplicate of the
    file's descriptor, then close the duplicate."""
    try:
        sync(fd)
    finally:
        os.close(fd)


class HomeJail(asyncssh.SFTPServer):
    def __init__(self, chan: asyncssh.SSHServerChannel, home: str, read_only: bool,
                 on_transfer: TransferHook | None = None,
                 on_bytes: Callable[[int, int], None] | None = None):
        os.makedirs(home, exist_ok=True)
        root = os.path.realpath(home).encode()
        super().__init__(chan, chroot=root)
        self._root = root
        self.read_only = read_only
        self._on_transfer = on_transfer or (lambda *a: None)
        self._on_bytes = on_bytes or (lambda sent, received: None)
        self._open: set[_Transfer] = set()

    # -- paths --------------------------------------------------------------------------

    def _inside(self, real: bytes) -> bool:
        return real == self._root or real.startswith(self._root + b"/")

    def map_path(self, path: bytes) -> bytes:
        """The local path, after checking that it resolves inside the home."""
        local = super().map_path(path)
        if not self._inside(os.path.realpath(local)):
            raise _outside()
        return local

    def _map_link(self, path: bytes) -> bytes:
        """For operations on a link itself: only its folder must resolve inside."""
        local = super().map_path(path)
        if local != self._root and not self._inside(os.path.realpath(os.path.dirname(local))):
            raise _outside()
        return local

    def _writable(self) -> None:
        if self.read_only:
            raise _read_only()

    # -- files --------------------------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        shown = posixpath.normpath(posixpath.join(b"/", path)).decode(errors="replace")
        local = self.map_path(path)
        if os.path.isdir(local):
            raise asyncssh.SFTPFailure("is a folder")
        if not pflags & _WRITE_FLAGS:
            return self._track(_Transfer(local, "rb", shown))
        self._writable()
        exists = os.path.exists(local)
        if pflags & asyncssh.FXF_EXCL and exists:
            raise asyncssh.SFTPFileAlreadyExists("file already exists")
        if exists and not pflags & asyncssh.FXF_TRUNC:
            # Appending or writing in place (a resumed upload): the file itself.
            mode = "a+b" if pflags & asyncssh.FXF_APPEND else "r+b"
            return self._track(_Transfer(local, mode, shown))
        if not exists and not pflags & asyncssh.FXF_CREAT:
            raise asyncssh.SFTPNoSuchFile("no such file")
        folder, name = os.path.split(local)
        part = os.path.join(folder, PART_PREFIX + secrets.token_hex(6).encode() + b"-" + name)
        transfer = _Transfer(part, "w+b", shown, final=local)
        self._track(transfer)
        if attrs.permissions is not None:
            os.fchmod(transfer.fileno(), attrs.permissions & 0o777)
        return transfer

    def _track(self, transfer: _Transfer) -> _Transfer:
        self._open.add(transfer)
        return transfer

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _Transfer)
        file_obj.seek(offset)
        # A client may ask for up to 4 GiB in one read: short reads are allowed, memory
        # for whatever a client asks is not.
        data = file_obj.read(min(size, MAX_READ))
        file_obj.read_bytes += len(data)
        self._on_bytes(len(data), 0)
        return data

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        assert isinstance(file_obj, _Transfer)
        if file_obj.final is None:  # a file opened in place: still refused when read-only
            self._writable()
        file_obj.seek(offset)
        try:
            view = memoryview(data)
            while view:
                view = view[file_obj.write(view) or 0:]
        except OSError:
            file_obj.failed = True  # a part with a hole is never put in place
            raise
        if file_obj.final is None:
            file_obj.written_bytes += len(data)
        else:
            file_obj.wrote(len(data))
        self._on_bytes(0, len(data))
        return len(data)

    async def close(self, file_obj: object) -> None:
        assert isinstance(file_obj, _Transfer)
        if self.channel.is_closing() or self._receiving_ended():
            # Not the client's close: the session is being torn down (a lost link, or the
            # client's end of the channel gone) with the file still open. Left for exit()
            # below, which discards an upload.
            return
        self._open.discard(file_obj)
        if file_obj.final is not None and file_obj.failed:
            self._discard(file_obj)
            self._on_transfer("upload", file_obj.shown, file_obj.written_bytes,
                              "failed: a write failed")
            raise asyncssh.SFTPFailure("upload not completed: a write failed")
        try:
            if file_obj.final is not None:
                # Complete: on disk first, then in place of the target in one rename.
                try:
                    await file_obj.on_disk()
                except BaseException:  # cancelled (the node stopping): not put in place
                    self._discard(file_obj)
                    raise
                file_obj.close()
                os.replace(file_obj.name, file_obj.final)
        except OSError as exc:
            self._discard(file_obj)
            self._on_transfer("upload", file_obj.shown, file_obj.written_bytes,
                              f"failed: {exc.strerror or exc}")
            raise asyncssh.SFTPFailure(f"upload not completed: {exc.strerror or exc}") \
                from None
        finally:
            file_obj.close()
        if file_obj.written_bytes or file_obj.final is not None:
            self._on_transfer("upload", file_obj.shown, file_obj.written_bytes, "ok")
        elif file_obj.read_bytes:
            self._on_transfer("download", file_obj.shown, file_obj.read_bytes, "ok")

    def _receiving_ended(self) -> bool:
        # The client sent EOF: what it had to send has all arrived, and a file it never
        # closed was not finished.
        return getattr(self.channel, "_recv_state", "open") != "open"

    def _discard(self, transfer: _Transfer) -> None:
        transfer.close()
        if transfer.final is not None:
            try:
                os.unlink(transfer.name)
            except OSError:
                pass

    def exit(self) -> None:
        # Uploads still open when the session ends were cut off: the target keeps what it
        # had. Then an exit status, which OpenSSH's scp (SFTP mode) needs to report success.
        for transfer in list(self._open):
            self._discard(transfer)
            if transfer.final is not None:
                self._on_transfer("upload", transfer.shown, transfer.written_bytes,
                                  "cut off: discarded")
            elif transfer.read_bytes:
                self._on_transfer("download", transfer.shown, transfer.read_bytes,
                                  "cut off")
        self._open.clear()
        try:
            self.channel.exit(0)
        except (OSError, asyncssh.Error, AssertionError):
            pass  # the channel is already closing: nobody is left to tell

    # -- the rest of the filesystem: resolved like map_path, refused when read-only ------

    def lstat(self, path: bytes) -> Any:
        return os.lstat(self._map_link(path))

    def readlink(self, path: bytes) -> bytes:
        local = self._map_link(path)
        target = os.path.realpath(local)
        if not self._inside(target):
            raise _outside()
        return self.reverse_map_path(target)

    def remove(self, path: bytes) -> None:
        self._writable()
        os.remove(self._map_link(path))

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        old, new = self._map_link(oldpath), self._map_link(newpath)
        if os.path.lexists(new):
            raise asyncssh.SFTPFileAlreadyExists("file already exists")
        os.rename(old, new)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        os.replace(self._map_link(oldpath), self._map_link(newpath))

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        super().mkdir(path, _tamed(attrs))

    def rmdir(self, path: bytes) -> None:
        self._writable()
        os.rmdir(self._map_link(path))

    def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        super().setstat(path, _tamed(attrs))

    def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        super().lsetstat(path, _tamed(attrs))

    def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        self._writable()
        super().fsetstat(file_obj, _tamed(attrs))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        # The target is stored as the absolute local path it names inside the home, folded
        # lexically (no `..` left): such a link cannot be made to point elsewhere later by
        # moving it or swapping a folder in its path.
        self._writable()
        new = self._map_link(newpath)
        folder = posixpath.dirname(posixpath.normpath(posixpath.join(b"/", newpath)))
        virtual = posixpath.normpath(posixpath.join(folder, oldpath))
        target = posixpath.join(self._root, virtual.lstrip(b"/")) if virtual != b"/" \
            else self._root
        os.symlink(target, new)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        self._map_link(newpath)
        super().link(oldpath, newpath)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs) -> object:
        raise asyncssh.SFTPOpUnsupported("use SFTP version 3")

    async def scandir(self, path: bytes):  # type: ignore[no-untyped-def, override]
        # Parts of uploads under way are not files yet: listings do not show them.
        async for entry in super().scandir(path):
            name = entry.filename
            if isinstance(name, bytes) and name.startswith(PART_PREFIX):
                continue
            yield entry
