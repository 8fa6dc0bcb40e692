"""Azure Blob Storage sink: managed identity in Azure, a connection string for Azurite."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterable, Iterator

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings

from qualys.config.settings import BlobOutput
from qualys.errors import LockHeldError, SinkError
from qualys.output.lock import LOCK_TTL_SECONDS, LockHandle
from qualys.output.sink import JSON

#: A streamed write up to this size is one Put Blob; a larger one is staged in blocks of this size
#: and committed at once (Put Block List), so readers still never see half a blob.
BLOCK_BYTES = 4 << 20
#: Downloads come in pieces of this size (the SDK's first GET would otherwise take up to 32 MiB): the
#: state merge reads four files at once (two of the previous state, two of the run's parts).
READ_BYTES = 1 << 20

class BlobSink:
    """A blob container. Uploads are committed whole, so readers never see half a blob."""

    def __init__(self, container: ContainerClient, location: str, block_bytes: int = BLOCK_BYTES) -> None:
        self._container = container
        self.location = location
        self._block_bytes = block_bytes
        self._ready = False

    @classmethod
    def from_settings(cls, output: BlobOutput, credential: TokenCredential | None = None) -> BlobSink:
        if output.connection_string is not None:
            try:
                service = BlobServiceClient.from_connection_string(
                    output.connection_string.reveal(), max_single_get_size=READ_BYTES, max_chunk_get_size=READ_BYTES
                )
            except ValueError:
                raise SinkError("OUTPUT_STORAGE_CONNECTION_STRING is not a valid connection string.") from None
        else:
            assert output.account_url is not None
            if credential is None:
                from qualys.hosting.identity import azure_credential

                credential = azure_credential()
            service = BlobServiceClient(
                output.account_url, credential=credential,
                max_single_get_size=READ_BYTES, max_chunk_get_size=READ_BYTES,
            )
        container = service.get_container_client(output.container)
        return cls(container, f"container {output.container} at {service.url.split('?')[0]}")

    def uri(self, path: str) -> str:
        return f"{self._container.url.split('?')[0]}/{path}"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ClientAuthenticationError as exc:
            raise SinkError(
                f"Blob Storage refused {what} in {self.location} (authentication failed).",
                "Check the identity (AZURE_CLIENT_ID) or the connection string.",
            ) from exc
        except ServiceRequestError as exc:
            raise SinkError(f"Cannot reach Blob Storage for {what} ({self.location}).", "Check the account URL.") from exc
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise SinkError(
                    f"Blob Storage denied {what} in {self.location} (HTTP 403 {_error_code(exc)}).",
                    "Grant the Function App's identity 'Storage Blob Data Contributor' on the output container.",
                ) from exc
            status = f"HTTP {exc.status_code} {_error_code(exc)}".strip()
            raise SinkError(f"Blob Storage failed {what} in {self.location} ({status}).") from exc

    def _ensure_container(self) -> None:
        if self._ready:
            return
        with self._errors("creating the container"), contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        self._ready = True

    def write(self, path: str, data: bytes, content_type: str = JSON) -> None:
        self._ensure_container()
        with self._errors(f"writing {path}"):
            self._container.upload_blob(
                path, data, overwrite=True, content_settings=ContentSettings(content_type=content_type)
            )

    def write_chunks(self, path: str, chunks: Iterable[bytes], content_type: str = JSON) -> None:
        buffer = bytearray()
        blocks: list[BlobBlock] = []
        prefix = uuid.uuid4().hex
        for chunk in chunks:
            buffer += chunk
            if len(buffer) >= self._block_bytes:
                blocks.append(self._stage(path, prefix, len(blocks), bytes(buffer)))
                buffer.clear()
        if not blocks:
            self.write(path, bytes(buffer), content_type)
            return
        if buffer:
            blocks.append(self._stage(path, prefix, len(blocks), bytes(buffer)))
        with self._errors(f"writing {path}"):
            self._container.get_blob_client(path).commit_block_list(
                blocks, content_settings=ContentSettings(content_type=content_type)
            )

    def _stage(self, path: str, prefix: str, number: int, data: bytes) -> BlobBlock:
        """Upload one uncommitted block (invisible to readers; Blob Storage drops uncommitted blocks by itself)."""
        block_id = base64.b64encode(f"{prefix}-{number:06d}".encode()).decode()
        self._ensure_container()  # once: it remembers
        with self._errors(f"writing {path}"):
            self._container.get_blob_client(path).stage_block(block_id, data)
        return BlobBlock(block_id=block_id)

    def read(self, path: str) -> bytes | None:
        self._ensure_container()
        with self._errors(f"reading {path}"):
            try:
                return self._container.download_blob(path).readall()
            except ResourceNotFoundError:
                return None

    def read_chunks(self, path: str) -> Iterator[bytes]:
        self._ensure_container()
        with self._errors(f"reading {path}"):
            try:
                yield from self._container.download_blob(path).chunks()
            except ResourceNotFoundError:
                return

    def list(self, prefix: str) -> list[str]:
        self._ensure_container()
        with self._errors(f"listing {prefix}"):
            return sorted(self._container.list_blob_names(name_starts_with=prefix))

    def delete(self, path: str) -> None:
        with self._errors(f"deleting {path}"), contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(path)

    @contextlib.contextmanager
    def lock(self, path: str) -> Iterator[LockHandle]:
        """A lease on the blob ``path``: Blob Storage ends it by itself if we die."""
        self._ensure_container()
        blob = self._container.get_blob_client(path)
        with self._errors("creating the lock blob"), contextlib.suppress(ResourceExistsError, HttpResponseError):
            blob.upload_blob(b"", overwrite=False)
        lease_id = str(uuid.uuid4())
        try:
            lease = blob.acquire_lease(lease_duration=LOCK_TTL_SECONDS, lease_id=lease_id)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                raise LockHeldError(
                    f"Another sync is writing to {self.location} (the lock blob {path} is leased).",
                    f"Wait for it to finish; a lease left by a dead process expires within {LOCK_TTL_SECONDS} s.",
                ) from None
            raise SinkError(f"Cannot lease {path} in {self.location} (HTTP {exc.status_code}).") from exc
        handle = LockHandle(lease.renew, LOCK_TTL_SECONDS / 3)
        try:
            yield handle
        finally:
            handle.stop()
            with contextlib.suppress(HttpResponseError):
                lease.release()


def _error_code(exc: HttpResponseError) -> str:
    return str(getattr(exc, "error_code", "") or "")
