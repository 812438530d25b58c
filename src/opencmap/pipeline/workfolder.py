"""The work folder of a resumable run: its identity, its done-list and its partial files.

``<out>/.opencmap-work`` by default. ``run.json`` holds the run identity
(:func:`opencmap.pipeline.plan.run_identity`): a later run with other inputs or parameters is
refused (:class:`~opencmap.errors.ConfigError`); so is a folder written with another work
layout by an earlier opencmap (start over with ``restart=True``). ``done.txt`` lists the finished
work, one mark a line (``level2\t<plate>``, ``level3\t<plate>``, ``plate\t<plate>``,
``set\t<set>``, ``cgs``); a mark is written only after the data it vouches for was handed to the
operating system, and periodically put on disk with ``fsync`` (:meth:`WorkFolder.checkpoint`).

Files: ``level3/<plate>.gctx`` and ``level3/<plate>.censored.txt`` (Level 1/2 input only: the
plate's Level 3 and censoring report), ``level4.partial.gctx`` and ``level5.partial.gctx`` (the
outputs, filled in place), ``level5/<set>.sig_info.txt`` and ``cgs.sig_info.txt`` (signature
tables), ``level2/<plate>.json`` (Level 1 input: where the plate's Level 2 files are).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opencmap.errors import ConfigError, PipelineError
from opencmap.io.atomic import atomic_write_path
from opencmap.io.versions import check_format_version

__all__ = ["WorkFolder", "WORK_VERSION", "safe_name"]

#: Format version of the work folder's ``run.json`` (the same number as the manifest's).
WORK_VERSION = 1


def safe_name(name: str) -> str:
    """A file name for ``name`` (a plate or replicate set): readable stem + a short hash."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"{stem}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _same_params(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` with its parameters completed by today's defaults, so a folder written before a
    parameter was added (with that parameter at its default) still resumes."""
    from opencmap.pipeline.params import PipelineParams

    params = identity.get("params")
    if not isinstance(params, dict):
        return identity
    try:
        return {**identity, "params": PipelineParams.from_dict(params).to_dict()}
    except ConfigError:
        return identity


class WorkFolder:
    """The work folder: run identity, done-list, per-plate Level 3 and per-set ``sig_info`` files.

    ``checkpoint_seconds``: seconds between durable checkpoints (:meth:`checkpoint`).
    """

    def __init__(self, root: Path, identity: dict[str, Any], *, restart: bool, checkpoint_seconds: float = 30.0) -> None:
        self.root = root
        self.checkpoint_seconds = checkpoint_seconds
        if restart and root.exists():
            shutil.rmtree(root)
        for sub in ("level3", "level4", "level5"):  # level4/ stays empty (Level 4 is one partial file)
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.identity_path = root / "run.json"
        self.done_path = root / "done.txt"
        if self.identity_path.exists():
            stored = json.loads(self.identity_path.read_text())
            check_format_version(
                stored.get("format_version", 0), WORK_VERSION, what="pipeline work folder", path=self.identity_path,
                fix="upgrade opencmap or remove that folder", also=ConfigError,
            )  # fmt: skip
            before = stored.get("identity") or {}
            if before.get("layout") != identity.get("layout"):
                raise ConfigError(
                    f"the work folder {root} was written by an earlier opencmap with another work layout "
                    f"(layout {before.get('layout', 1)}, this version writes {identity.get('layout')}); it cannot be "
                    "resumed: start over with restart=True (--restart) or use another output folder"
                )
            if _same_params(before) != identity:
                raise ConfigError(
                    f"the work folder {root} belongs to a run with different inputs or parameters; "
                    "start over with restart=True (--restart) or use another output folder"
                )
        else:
            with atomic_write_path(self.identity_path) as tmp:
                tmp.write_text(json.dumps({"format_version": WORK_VERSION, "identity": identity}, indent=1))
        self._pending: list[str] = []
        self._last_sync = time.monotonic()
        self._syncer: threading.Thread | None = None
        self._sync_error: BaseException | None = None
        self.done: set[str] = set()
        if self.done_path.exists():
            self.done = {line for line in self.done_path.read_text().splitlines() if line}

    def level3_path(self, plate: str) -> Path:
        """A plate's Level 3 (from Level 1/2 input), written before the plate is z-scored."""
        return self.root / "level3" / f"{safe_name(plate)}.gctx"

    def censor_path(self, plate: str) -> Path:
        """A plate's censoring report (from Level 1/2 input)."""
        return self.root / "level3" / f"{safe_name(plate)}.censored.txt"

    def sig_info_path(self, set_name: str) -> Path:
        return self.root / "level5" / f"{safe_name(set_name)}.sig_info.txt"

    @property
    def cgs_info_path(self) -> Path:
        return self.root / "cgs.sig_info.txt"

    def partial_path(self, name: str) -> Path:
        """A partial output filled in place (``level4.partial.gctx``, ``level5.partial.gctx``)."""
        return self.root / name

    def is_done(self, key: str, *files: Path) -> bool:
        return key in self.done and all(f.exists() for f in files)

    def mark_done(self, key: str) -> None:
        self._append([key], sync=True)
        self.done.add(key)

    def fresh(self, *prefixes: str) -> bool:
        """No mark starting with one of ``prefixes`` is recorded yet."""
        return not any(key.startswith(prefixes) for key in self.done)

    # -- checkpointed marks (Level 3 -> 5): a mark reaches done.txt only after the data it
    #    vouches for was handed to the OS (interruption) or put on disk (periodic checkpoint)
    def pend(self, key: str) -> None:
        """Record ``key`` as done at the next :meth:`checkpoint`."""
        self._pending.append(key)
        self.done.add(key)

    def _append(self, keys: list[str], *, sync: bool) -> None:
        if keys:
            with open(self.done_path, "a", encoding="utf-8") as fh:
                fh.write("".join(k + "\n" for k in keys))
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())

    def checkpoint(self, files: Sequence[Any]) -> None:
        """Every ``checkpoint_seconds``: put ``files`` (:class:`GCTXSlots`) and then the pending
        marks on disk (``fsync``), in a background thread so computing goes on meanwhile.

        A mark never reaches the disk before the values it vouches for, so even a power cut
        cannot leave a done-list that promises values the files lack.
        """
        keys = self._pending
        if not keys or time.monotonic() - self._last_sync < self.checkpoint_seconds:
            return
        self.wait()
        for f in files:
            f.flush()
        self._pending = []
        self._last_sync = time.monotonic()
        paths = [f.path for f in files]

        def durable() -> None:
            try:
                for path in paths:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                self._append(keys, sync=True)
            except BaseException as exc:  # noqa: BLE001 - reported by wait()
                self._sync_error = exc

        self._syncer = threading.Thread(target=durable, name="opencmap-checkpoint", daemon=True)
        self._syncer.start()

    def record(self, files: Sequence[Any], *, quiet: bool = False) -> None:
        """Hand ``files`` to the operating system, then write every pending mark (no ``fsync``:
        what the OS holds survives the end or interruption of this process).

        ``quiet``: after an interruption, an error of a background checkpoint is not raised.
        """
        try:
            self.wait()
        except PipelineError:
            if not quiet:
                raise
        for f in files:
            f.flush()
        keys, self._pending = self._pending, []
        self._append(keys, sync=False)

    def wait(self) -> None:
        """Wait for a background checkpoint; re-raise its error."""
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        self._raise_sync_error()

    def _raise_sync_error(self) -> None:
        if self._sync_error is not None:
            exc, self._sync_error = self._sync_error, None
            raise PipelineError(f"cannot record progress in {self.done_path}: {exc}") from exc

    def forget(self) -> None:
        """Drop every mark (the partial outputs were lost): the run starts over."""
        self.wait()
        self.done.clear()
        self._pending = []
        with atomic_write_path(self.done_path) as tmp:
            tmp.write_text("")
