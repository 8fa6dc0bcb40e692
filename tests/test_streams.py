"""What keeps a sync's memory flat: streamed sink writes and reads, held pages parked on disk,
the KnowledgeBase cache read and compacted line by line. Each against real files or Azurite."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualys.api.assets import Findings, RawAsset, RawInterface
from qualys.api.hostasset_search import parse_page
from qualys.api.knowledge_base import KbEntry
from qualys.config.secret import Secret
from qualys.config.settings import BlobOutput
from qualys.errors import ConnectorError
from qualys.output.blob import BlobSink
from qualys.output.folder import FolderSink
from qualys.output.sink import Sink, read_lines
from qualys.sync.kb_store import KnowledgeBaseStore
from qualys.sync.records import kb_fragment
from qualys.sync.run import run_sync
from qualys.sync.spill import PageSpill
from qualys.sync.state import RunState
from qualys_simulator.server import QualysSimulator
from tests.helpers import PASSWORD, USER, assert_matches_truth, estate_in_past, read_latest, settings_for

FIXTURES = Path(__file__).parent / "fixtures"


class Boom(Exception):
    pass


def failing_after(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks
    raise Boom("the renderer failed mid-part")


def blob_sink(connection_string: str, block_bytes: int) -> BlobSink:
    output = BlobOutput(container=f"s-{uuid.uuid4().hex[:12]}", connection_string=Secret(connection_string))
    sink = BlobSink.from_settings(output)
    return BlobSink(sink._container, sink.location, block_bytes=block_bytes)


def many_lines() -> list[bytes]:
    # Lengths 0..999 bytes, with U+2028 and NEL inside lines: only b"\n" ends a line.
    return [f"{n}:".encode() + ("x\u2028\x85" * (n % 333)).encode() for n in range(600)]


# --------------------------------------------------------------------------- sinks


@pytest.mark.parametrize("kind", ["folder", "blob"])
def test_streamed_write_and_read_give_back_every_byte(kind: str, tmp_path: Path, azurite_connection_string: str) -> None:
    # Blob blocks of 1 KiB make the ~300 KB body a multi-block upload committed as one list.
    sink: Sink = FolderSink(tmp_path) if kind == "folder" else blob_sink(azurite_connection_string, 1024)
    lines = many_lines()
    sink.write_chunks("runs/x/part.jsonl", (line + b"\n" for line in lines), "application/x-ndjson")
    assert sink.read("runs/x/part.jsonl") == b"".join(line + b"\n" for line in lines)
    assert list(read_lines(sink, "runs/x/part.jsonl")) == lines
    sink.write_chunks("small.json", [b"{", b"}"])
    assert sink.read("small.json") == b"{}"
    sink.write_chunks("empty.json", [])
    assert sink.read("empty.json") == b""
    assert list(sink.read_chunks("missing.jsonl")) == [] and list(read_lines(sink, "missing.jsonl")) == []
    sink.write("last-line-open.txt", b"a\nb")
    assert list(read_lines(sink, "last-line-open.txt")) == [b"a", b"b"]


@pytest.mark.parametrize("kind", ["folder", "blob"])
def test_a_write_that_fails_midway_leaves_the_old_content(kind: str, tmp_path: Path, azurite_connection_string: str) -> None:
    sink: Sink = FolderSink(tmp_path) if kind == "folder" else blob_sink(azurite_connection_string, 1024)
    sink.write("state/part.jsonl", b"old\n")
    with pytest.raises(Boom):
        sink.write_chunks("state/part.jsonl", failing_after(many_lines()))
    assert sink.read("state/part.jsonl") == b"old\n"
    assert sink.list("state/") == ["state/part.jsonl"]
    if kind == "folder":
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["part.jsonl"]  # no temp file left


def test_blob_uploads_of_many_blocks_keep_the_content_type(azurite_connection_string: str) -> None:
    sink = blob_sink(azurite_connection_string, 100)
    sink.write_chunks("runs/p.jsonl", [b"x" * 250, b"y" * 250, b"z"], "application/x-ndjson")
    blob = sink._container.get_blob_client("runs/p.jsonl")
    assert blob.download_blob().readall() == b"x" * 250 + b"y" * 250 + b"z"
    assert blob.get_blob_properties().content_settings.content_type == "application/x-ndjson"
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == 3


# --------------------------------------------------------------------------- parked pages


def hostile_asset() -> RawAsset:
    return RawAsset(
        id=2**40 + 7, qweb_host_id="77", agent_id="a-\u00e9\U0001f600", name='quote " back \\ \u2028 \x85 end',
        fqdn=None, dns_host_name="h.example", netbios_name=None, address="10.0.0.1", os="Windows",
        tracking_method="AGENT", created="2024-01-01T00:00:00Z", modified="2026-11-01T00:00:00.123+02:00",
        last_vuln_scan=None, tags=[("5", "Crit"), ("6", None)],
        interfaces=[RawInterface("10.0.0.1", "00-0D-3A-C4-8H-3F", None), RawInterface(None, None, "10.0.0.254")],
        cloud_ips=["52.1.1.1"], cloud_macs=["aa:bb:cc:dd:ee:ff"],
        findings=Findings([(1, "i1", "2025-01-01T00:00:00Z", None), (2**62, None, None, "x"), (1, "", None, None)]),
    )


def test_parked_pages_come_back_equal_and_in_any_order() -> None:
    with open(FIXTURES / "hostasset_mixed_page.xml", "rb") as body:
        fixture = parse_page(body).assets
    pages = [fixture, [hostile_asset()], [], [RawAsset(id=1)]]
    spill = PageSpill()
    try:
        parked = [spill.park(page) for page in pages]
        assert spill.pages_parked == 4
        taken = [spill.take(parked[i]) for i in (1, 3, 0, 2)]
        assert taken == [pages[1], pages[3], pages[0], pages[2]]
        assert list(taken[0][0].findings.rows()) == list(hostile_asset().findings.rows())
        assert sum(len(asset.findings) for asset in taken[2]) == sum(len(asset.findings) for asset in fixture) > 0
        # Empty again: the file is truncated, and the next page starts at its beginning.
        assert spill.park([hostile_asset()]).offset == 0
    finally:
        spill.close()


def test_a_damaged_spill_file_is_a_clear_error() -> None:
    spill = PageSpill()
    try:
        parked = spill.park([hostile_asset(), hostile_asset()])
        assert spill._file is not None
        spill._file.truncate(parked.length // 2)
        with pytest.raises(ConnectorError, match="held pages is damaged"):
            spill.take(parked)
    finally:
        spill.close()


def test_held_pages_wait_on_disk_and_the_run_equals_the_truth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Pages of 20 assets bring new QIDs for many pages: they are held, parked and written later.
    with QualysSimulator(estate_in_past(300), username=USER, password=PASSWORD) as simulator:
        caplog.set_level(logging.INFO, logger="qualys.sync")
        run_sync(settings_for(simulator, str(tmp_path), page_size=20))
        assert_matches_truth(read_latest(FolderSink(tmp_path)), simulator.estate)
    parked = [r.getMessage() for r in caplog.records if "waited for KnowledgeBase entries on local disk" in r.getMessage()]
    assert parked and int(parked[0].split()[0]) >= 2


def test_without_a_usable_temporary_folder_held_pages_wait_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    # tempfile.tempdir is the documented override of the temporary folder; this one does not exist.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "does-not-exist"))
    with QualysSimulator(estate_in_past(300), username=USER, password=PASSWORD) as simulator:
        run_sync(settings_for(simulator, str(tmp_path / "out"), page_size=20))
        assert_matches_truth(read_latest(FolderSink(tmp_path / "out")), simulator.estate)
    assert any("keeping them in memory" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- KnowledgeBase


def entry(qid: int, title: str) -> KbEntry:
    return KbEntry(qid, title, "Vulnerability", 3, "CVE-2024-1,CVE-2024-2" if qid % 2 else "", 5.0, None, "2026-01-01T00:00:00Z")


KB_DIR = "state/kb/"


def test_cache_compaction_keeps_the_latest_entry_of_each_qid(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path)
    # Titles with U+2028 and NEL: the cache splits lines on "\n" only (str.splitlines() would cut them).
    older = [entry(qid, f"old {qid}\u2028") for qid in range(1, 600)]
    newer = [entry(qid, f"new {qid}\x85") for qid in range(300, 900)]
    for name, entries in (("a-run-00001", older), ("b-run-00001", newer)):
        sink.write(f"{KB_DIR}{name}.jsonl", "".join(e.to_json() + "\n" for e in entries).encode())
    store = KnowledgeBaseStore(RunState(sink), "c-run")
    loaded = {e.qid: kb_fragment(e) for e in store.entries()}  # a QID's later entry overrides its earlier one
    store.compact(refreshed_at="2026-11-28T00:00:00Z")
    assert sink.list(KB_DIR) == [f"{KB_DIR}c-run-zz-all.jsonl"]
    lines = list(read_lines(sink, f"{KB_DIR}c-run-zz-all.jsonl"))
    compacted = {e.qid: e for e in (KbEntry.from_json(line.decode()) for line in lines)}
    assert len(lines) == len(compacted) == 899
    assert compacted[1].title == "old 1\u2028" and compacted[300].title == "new 300\x85"
    assert compacted[899].title == "new 899\x85"
    reloaded = KnowledgeBaseStore(RunState(sink), "d-run")
    assert {e.qid: kb_fragment(e) for e in reloaded.entries()} == loaded == {
        qid: kb_fragment(entry) for qid, entry in compacted.items()
    }
    assert os.path.getsize(tmp_path / KB_DIR / "c-run-zz-all.jsonl") == sum(len(line) + 1 for line in lines)
    # A run that fetched nothing new leaves the compacted file as it is, and only moves the refresh stamp.
    before = os.stat(tmp_path / KB_DIR / "c-run-zz-all.jsonl")
    reloaded.compact(refreshed_at="2026-11-29T00:00:00Z")
    after = os.stat(tmp_path / KB_DIR / "c-run-zz-all.jsonl")
    assert sink.list(KB_DIR) == [f"{KB_DIR}c-run-zz-all.jsonl"]
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert json.loads(sink.read("state/kb-refresh.json") or b"{}") == {"refreshed_at": "2026-11-29T00:00:00Z"}
