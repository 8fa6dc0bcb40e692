"""The output contract's files in a sink: each run's parts and manifest, and ``latest.json``.

``runs/<run_id>/devices/part-NNNNN.jsonl`` and ``.../findings/part-NNNNN.jsonl`` hold the
records; ``runs/<run_id>/manifest.json`` is written when the run is complete; ``latest.json``
is replaced last, so a reader following it only ever sees complete runs (docs/output-contract.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from qualys.output.sink import NDJSON, Sink, read_json, write_json

LATEST_PATH = "latest.json"


def manifest_path(run_id: str) -> str:
    return f"runs/{run_id}/manifest.json"


class RunOutput:
    """Writes and reads the output contract's files through a sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    @property
    def location(self) -> str:
        return self.sink.location

    def write_part(self, run_id: str, kind: str, number: int, chunks: Iterable[bytes]) -> str:
        """Write part ``number`` of ``kind`` (devices, findings) from streamed JSON Lines; returns its path."""
        path = f"runs/{run_id}/{kind}/part-{number:05d}.jsonl"
        self.sink.write_chunks(path, chunks, NDJSON)
        return path

    def has_manifest(self, run_id: str) -> bool:
        return self.sink.read(manifest_path(run_id)) is not None

    def write_manifest(self, run_id: str, manifest: dict[str, object]) -> str:
        path = manifest_path(run_id)
        write_json(self.sink, path, manifest)
        return path

    def latest_manifest(self) -> dict[str, object] | None:
        """The manifest ``latest.json`` points at (None before the first complete run)."""
        latest = read_json(self.sink, LATEST_PATH)
        if not latest or not latest.get("manifest"):
            return None
        return read_json(self.sink, str(latest["manifest"]))

    def publish(self, run_id: str) -> None:
        """Point ``latest.json`` at the run (its manifest must exist)."""
        write_json(self.sink, LATEST_PATH, {"run_id": run_id, "manifest": manifest_path(run_id)})
