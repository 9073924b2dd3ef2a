"""Hear another process's commit the moment it happens: inotify on the database's write-ahead log (Linux).

Every commit in WAL mode writes the ``-wal`` file, so a modification event there says "look at ``PRAGMA
data_version`` now" instead of at the next poll. The watch only hurries the poll along: it never decides anything,
and where it is not available (another OS, no inotify, too many watches, the file replaced) the poll alone still
notices every commit, as before. The kernel interface is called through ``ctypes``: no dependency, and nothing
runs on a thread (the inotify descriptor is read on the event loop when it is readable).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

import anyio

logger = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class FileWatch:
    """A modification watch on one file; ``changed()`` returns after the file was written to."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, path: Path) -> FileWatch | None:
        """A watch on ``path``, or None where inotify cannot watch it (the caller then only polls)."""
        if not sys.platform.startswith("linux") or not path.exists():
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
                error = ctypes.get_errno()
                os.close(fd)
                raise OSError(error, "inotify_add_watch")
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
            logger.debug("no inotify watch on %s (%s); polling only", path, exc)
            return None
        return cls(fd)

    async def changed(self) -> None:
        """Wait until the file is written to (events that came meanwhile count: none is lost, several are one)."""
        while True:
            try:
                if os.read(self._fd, 4096):
                    return
            except BlockingIOError:
                pass
            await anyio.wait_readable(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
