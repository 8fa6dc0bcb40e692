"""The output contract's files in a sink: each run's parts and manifest, and ``latest.json``.

``runs/<run_id>/devices/part-NNNNN.jsonl`` and ``.../findings/part-NNNNN.jsonl`` hold the
records the run read; ``.../current/{devices,findings}/`` the segments of the current state it
wrote, ``.../changes/`` its change feed; ``runs/<run_id>/manifest.json`` is written when the run
is complete; ``latest.json`` is replaced last, so a reader following it only ever sees complete
runs, each with its state and changes (docs/output-contract.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from qualys.output.sink import NDJSON, Sink, read_json, read_lines, write_json

LATEST_PATH = "latest.json"


def is_whole_record(line: bytes) -> bool:
    """A record line (without its line end) is one non-empty JSON object: it starts with ``{`` and ends
    with ``}``. A cheap guard for lines used without decoding; a line cut short fails it."""
    text = line.rstrip()
    return len(text) > 2 and text[:1] == b"{" and text[-1:] == b"}"


def manifest_path(run_id: str) -> str:
    return f"runs/{run_id}/manifest.json"


def part_path(run_id: str, kind: str, number: int) -> str:
    return f"runs/{run_id}/{kind}/part-{number:05d}.jsonl"


class RunOutput:
    """Writes and reads the output contract's files through a sink."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    @property
    def location(self) -> str:
        return self.sink.location

    def write_part(self, run_id: str, kind: str, number: int, chunks: Iterable[bytes]) -> str:
        """Write part ``number`` of ``kind`` (devices, findings, current/devices, current/findings, changes)
        from streamed JSON Lines; returns its path."""
        path = part_path(run_id, kind, number)
        self.sink.write_chunks(path, chunks, NDJSON)
        return path

    def read_lines(self, path: str) -> Iterator[bytes]:
        return read_lines(self.sink, path)

    def run_files(self, run_id: str, folder: str) -> list[str]:
        """The files under ``runs/<run_id>/<folder>/``."""
        return self.sink.list(f"runs/{run_id}/{folder}/")

    def delete(self, path: str) -> None:
        self.sink.delete(path)

    def manifest(self, run_id: str) -> dict[str, object] | None:
        return read_json(self.sink, manifest_path(run_id))

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
