"""A static file server on 127.0.0.1 for the fetch tests and benchmark: a release mirror.

It serves a folder at the official hosts' relative paths, with or without HTTP range support
(plain static servers often lack it), can drop the connection part-way through a file (once per
request asked for), and logs every request (method, path, Range header).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["MirrorServer", "serve_mirror"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MirrorServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        srv = self.server
        rel = urllib.parse.unquote(self.path.split("?", 1)[0]).lstrip("/")
        path = (srv.root / rel).resolve()
        range_header = self.headers.get("Range")
        srv.requests.append((self.command, rel, range_header))
        if not path.is_file() or srv.root not in path.parents:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        st = path.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size - 1, 200
        if_range = self.headers.get("If-Range")
        if range_header and srv.ranges and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if m:
                start = int(m[1])
                end = min(int(m[2]), size - 1) if m[2] else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if srv.ranges:
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
        self.end_headers()
        if head:
            return
        limit = srv.drops.pop(rel, None)
        with open(path, "rb") as fh:
            if limit is None:
                self.wfile.flush()
                self.connection.sendfile(fh, start, length)
                return
            fh.seek(start)
            self.wfile.write(fh.read(min(limit, length)))
            self.wfile.flush()
        # drop the connection part-way through the body
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class MirrorServer(ThreadingHTTPServer):
    """Serves ``root``; ``ranges`` toggles range support; ``drops[path] = n`` sends n bytes of the next GET of path, then hangs up."""

    daemon_threads = True

    def __init__(self, root: Path, *, ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = Path(root).resolve()
        self.ranges = ranges
        self.drops: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def gets(self, rel: str | None = None) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and (rel is None or r[1] == rel)]


@contextlib.contextmanager
def serve_mirror(root: Path, *, ranges: bool = True) -> Iterator[MirrorServer]:
    server = MirrorServer(root, ranges=ranges)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
