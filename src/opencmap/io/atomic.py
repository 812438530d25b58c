"""Atomic file writes: a file is either written whole or not at all.

Every writer in :mod:`opencmap.io` goes through :func:`atomic_write_path` (or, for writers that
stay open across calls, :class:`AtomicFile`): it writes to a temporary file in the destination
folder (same file system, so the final rename is atomic) and renames it over the destination only
when writing finished without error. On error the temporary file is removed and an existing
destination is left untouched.

A folder of files written together (a query's results) goes through :func:`atomic_write_dir`:
the files are written into a temporary folder beside the destination, which then replaces the
destination whole, so a folder never mixes files of two runs. :func:`check_output_dir` tells,
before any work starts, whether a destination may be written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path

__all__ = ["atomic_write_path", "AtomicFile", "atomic_write_dir", "check_output_dir"]


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


def check_output_dir(
    path: str | PathLike[str],
    *,
    overwrite: bool = False,
    flag: str = "overwrite=True",
    replaceable: Sequence[str] = (),
) -> Path:
    """Check that ``path`` may become a results folder; returns it as a :class:`~pathlib.Path`.

    Allowed: a path that does not exist, an empty folder, or (with ``overwrite``) a folder with
    files, which will be replaced whole. Raises :class:`~opencmap.errors.ConfigError` for a path
    that is a file (or another non-folder), for a non-empty folder without ``overwrite``
    (``flag`` names the option to give, e.g. ``--overwrite`` on the command line), for a folder
    that holds the current directory, and, when ``replaceable`` names marker files (e.g. those
    every results folder has), for a non-empty folder with none of them: ``overwrite`` then never
    deletes a folder of other files given by mistake (``--out ~``).
    """
    from opencmap.errors import ConfigError

    out = Path(path)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ConfigError(f"output folder {out} exists and is not a folder (a file?); give a folder path")
        if any(out.iterdir()):
            if not overwrite:
                raise ConfigError(
                    f"output folder {out} is not empty; give {flag} to replace it whole, or choose a new folder"
                )
            cwd = Path.cwd().resolve()
            if out.resolve() == cwd or out.resolve() in cwd.parents:
                raise ConfigError(f"output folder {out} holds the current directory; choose another folder")
            if replaceable and not any((out / name).exists() for name in replaceable):
                raise ConfigError(
                    f"output folder {out} is not empty and is not a results folder (none of {', '.join(replaceable)}); "
                    f"{flag} replaces only results folders: choose a new or empty folder"
                )
    else:
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"cannot create output folder {out}: {parent} is a file, not a folder")
                break
    return out


@contextlib.contextmanager
def atomic_write_dir(
    path: str | PathLike[str],
    *,
    overwrite: bool = False,
    flag: str = "overwrite=True",
    replaceable: Sequence[str] = (),
) -> Iterator[Path]:
    """Yield a new empty temporary folder beside ``path``; it becomes ``path`` if the block succeeds.

    The destination is checked first (:func:`check_output_dir`). When the block finishes, an old
    folder at ``path`` is moved aside, the temporary folder renamed to ``path`` (same file
    system: atomic), and the old folder deleted; no file of the old folder survives beside the new
    ones. On any exception the temporary folder is deleted and the old folder is left exactly as
    it was.
    """
    out = check_output_dir(path, overwrite=overwrite, flag=flag, replaceable=replaceable)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        check_output_dir(out, overwrite=overwrite, flag=flag, replaceable=replaceable)  # it may have changed meanwhile
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old: Path | None = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:  # put the old folder back
                os.replace(old / out.name, out)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
