"""A test store and a real ``opencmap serve`` process on 127.0.0.1 (shared by tests/api and tests/web).

The store is built with the library's :func:`build_store` + :func:`build_background` from the
synthetic Level 5 compendium of the query tests (planted programs A and B, see
``tests/query/synthetic_level5.py``).
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))
make_level5 = _SYNTHETIC["make_level5"]
PCL: dict[str, list[str]] = _SYNTHETIC["PCL"]


def build_test_store(root: Path) -> tuple[Path, Path, dict[str, list[str]]]:
    """(store path, PCL GMT path, gene programs) under ``root``."""
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gct, info, programs = make_level5()
    store = build_store(root / "store", gct, sig_info=info, block_size=50)
    build_background(store, pcl=PCL)
    pcl_path = root / "pcl.gmt"
    write_gmt([GeneSet(name, "", tuple(members)) for name, members in PCL.items()], pcl_path)
    return root / "store", pcl_path, programs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``opencmap serve`` in a subprocess; ``url`` is its base URL."""

    def __init__(self, store: Path, db: Path, pcl: Path, *, token: str | None = None, extra: list[str] = ()):  # type: ignore[assignment]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable, "-c", "from opencmap.cli import main; main()", "serve",
            "--store", str(store), "--db", str(db), "--pcl", str(pcl),
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", *extra,
        ]  # fmt: skip
        if token:
            args += ["--token", token]
        self.log = db.with_suffix(f".{self.port}.log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log.read_text()}")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
