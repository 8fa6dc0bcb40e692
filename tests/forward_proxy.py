"""A small forwarding HTTP proxy on loopback that records everything it could read.

``CONNECT host:port`` opens a tunnel (HTTPS through a proxy: the proxy sees the target and the
encrypted bytes only); an absolute-form request (``GET http://host/...``, plain HTTP through a proxy)
is forwarded and its headers recorded. Tests use it to show which traffic the standard proxy
variables (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) send through a proxy and what a proxy learns.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit


@dataclass
class Carried:
    """One connection the proxy handled: its request line, headers, and every byte it saw, both ways."""

    method: str
    target: str
    headers: dict[str, str]
    seen: bytearray = field(default_factory=bytearray)


class ForwardProxy:
    def __init__(self) -> None:
        self.carried: list[Carried] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, entry: Carried) -> None:
        with self._lock:
            self.carried.append(entry)

    def everything_seen(self) -> bytes:
        with self._lock:
            return b"".join(bytes(c.seen) for c in self.carried)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler], proxy: ForwardProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        proxy: ForwardProxy = self.server.proxy  # type: ignore[attr-defined]
        client: socket.socket = self.request
        head, rest = self._read_head(client)
        if not head:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        entry = Carried(method, target, headers, bytearray(head))
        proxy.record(entry)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=30)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute form: forwarded in origin form, one request per connection
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=30)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [line for line in header_lines if line and not line.lower().startswith(("proxy-", "connection:"))]
            lines = [f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""]
            upstream.sendall("\r\n".join(lines).encode("latin-1"))
        if rest:
            entry.seen += rest
            upstream.sendall(rest)
        self._pipe(client, upstream, entry)

    @staticmethod
    def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
        """The request head (through the blank line), and whatever arrived after it."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk:
                return b"", b""
            data += chunk
        end = data.index(b"\r\n\r\n") + 4
        return data[:end], data[end:]

    @staticmethod
    def _pipe(client: socket.socket, upstream: socket.socket, entry: Carried) -> None:
        """Copy bytes both ways until either side closes; keep every byte (what a proxy could read or store)."""
        with contextlib.closing(upstream):
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 30)
                if not ready:
                    return
                for source in ready:
                    try:
                        data = source.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    entry.seen += data
                    (upstream if source is client else client).sendall(data)
