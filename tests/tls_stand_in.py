"""What the TLS stand-ins of Azure services share: a self-signed certificate for 127.0.0.1 and an HTTPS server.

The real Azure SDK clients send bearer tokens over HTTPS only, so the Key Vault and Logs Ingestion
stand-ins (tests/keyvault_fake.py, tests/logs_ingestion_fake.py) serve real TLS on loopback; a client
trusts the stand-in with ``connection_verify=<its certificate>``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """``cert.pem``/``key.pem`` for 127.0.0.1 (SAN IP:127.0.0.1): with ``cryptography`` if importable, else openssl."""
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - cryptography comes with azure-identity
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key_path), "-out", str(cert_path), "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        return cert_path, key_path
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsServer(ThreadingHTTPServer):
    """An HTTPS server whose handlers reach the stand-in as ``server.owner``."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Any, context: ssl.SSLContext
    ) -> None:
        self.owner = owner
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake on the connection's own thread, so a stalled client never blocks accept()."""
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-request are not test failures; the stand-in's request log tells what happened."""


class TlsStandIn:
    """Lifecycle of a stand-in served by :class:`TlsServer` at ``https://127.0.0.1:<port>``."""

    #: The request handler class of the stand-in.
    handler: type[BaseHTTPRequestHandler]
    thread_name = "tls-stand-in"

    def __init__(self, directory: Path) -> None:
        self.cert_path, self._key_path = make_self_signed_cert(directory)
        self._server: TlsServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self._key_path)
        self._server = TlsServer(("127.0.0.1", 0), self.handler, self, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.thread_name} is not running")
        return f"https://127.0.0.1:{self._server.server_address[1]}"
