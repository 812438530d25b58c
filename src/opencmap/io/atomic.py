"""Atomic file writes: a file is either written whole or not at all.

Every writer in :mod:`opencmap.io` goes through :func:`atomic_write_path` (or, for writers that
stay open across calls, :class:`AtomicFile`): it writes to a temporary file in the destination
folder (same file system, so the final rename is atomic) and renames it over the destination only
when writing finished without error. On error the temporary file is removed and an existing
destination is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

__all__ = ["atomic_write_path", "AtomicFile"]


class AtomicFile:
    """A temporary path beside ``path``, renamed over it by :meth:`commit`, or removed by :meth:`discard`.

    Parameters
    ----------
    path:
        Final destination. Its folder must exist.
    mode:
        Permission bits of the final file (the umask is applied, as for ``open``).
    """

    def __init__(self, path: str | PathLike[str], *, mode: int = 0o644) -> None:
        self.final = Path(path)
        folder = self.final.parent if str(self.final.parent) else Path(".")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        self.path = Path(tmp_name)
        self._mode = mode
        self.done = False

    def commit(self) -> None:
        """Rename the temporary file over the destination."""
        if self.done:
            return
        if not self.path.exists():
            raise FileNotFoundError(f"the writer did not create {self.path}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, self._mode & ~umask)
        os.replace(self.path, self.final)
        self.done = True

    def discard(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.done = True


@contextlib.contextmanager
def atomic_write_path(path: str | PathLike[str], *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The temporary file exists (empty) when the block starts; writers may overwrite it. On any
    exception it is removed and the exception propagates.

    Examples
    --------
    >>> with atomic_write_path("out.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("hello")
    """
    target = AtomicFile(path, mode=mode)
    try:
        yield target.path
        target.commit()
    except BaseException:
        target.discard()
        raise
