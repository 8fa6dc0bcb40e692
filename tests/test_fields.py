"""Asking Qualys for only the fields the connector keeps (QUALYS_LIMIT_FIELDS): the same records, far fewer bytes.

The simulator honours ``<fields>`` as documented (docs/qualys-api.md §2.7): only the elements asked
for come back, and without ``<fields>`` whole records, software and port lists included.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from qualys.api.hostasset_search import HOSTASSET_FIELDS, ID_FIELDS
from qualys.api.qps import fields_xml
from qualys.api.tags import TAG_FIELDS
from qualys.output.folder import FolderSink
from qualys.sync.run import SyncResult, run_sync
from qualys_simulator.estate import Estate
from qualys_simulator.server import QualysSimulator
from tests.helpers import PASSWORD, USER, assert_matches_truth, client_for, estate_in_past, read_latest, settings_for

PAGE = 40


@pytest.fixture(scope="module")
def estate() -> Estate:
    return estate_in_past(260, seed=19)


def synced(simulator: QualysSimulator, out: Path, *, limit_fields: bool, partitions: int = 1) -> SyncResult:
    settings = dataclasses.replace(
        settings_for(simulator, str(out), page_size=PAGE, partitions=partitions), limit_fields=limit_fields
    )
    with client_for(simulator) as client:
        return run_sync(settings, client=client)


def output_files(root: Path, run_id: str) -> dict[str, bytes]:
    """Every file of the run's output, with the run id taken out of names and bodies."""
    files = {}
    for path in sorted((root / "runs" / run_id).rglob("*.jsonl")):
        files[str(path.relative_to(root / "runs" / run_id))] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def both_ways(estate: Estate, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[SyncResult, Path, int]]:
    """The same estate synced with and without field limiting: (result, output folder, bytes Qualys sent)."""
    runs = {}
    for limit in (True, False):
        out = tmp_path_factory.mktemp(f"limit-{limit}")
        with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
            result = synced(sim, out, limit_fields=limit)
            fields_asked = [r.params.get("fields") for r in sim.requests if r.endpoint in ("hostasset", "tag")]
            assert fields_asked and all((asked is not None) is limit for asked in fields_asked), fields_asked
            runs[limit] = (result, out, sum(r.bytes_sent for r in sim.requests))
    return runs


def test_limited_fields_lose_not_a_single_value(both_ways: dict[bool, tuple[SyncResult, Path, int]], estate: Estate) -> None:
    (limited, limited_out, _), (whole, whole_out, _) = both_ways[True], both_ways[False]
    assert (limited.devices, limited.findings, limited.pages) == (whole.devices, whole.findings, whole.pages)
    limited_files, whole_files = output_files(limited_out, limited.run_id), output_files(whole_out, whole.run_id)
    assert list(limited_files) == list(whole_files) and len(limited_files) >= 10
    for name, data in limited_files.items():  # byte for byte: every record, in the same order
        assert data.replace(limited.run_id.encode(), b"RUN") == whole_files[name].replace(whole.run_id.encode(), b"RUN"), name
    assert_matches_truth(read_latest(FolderSink(limited_out)), estate)


def test_limited_fields_cut_the_bytes_qualys_sends(both_ways: dict[bool, tuple[SyncResult, Path, int]]) -> None:
    limited_bytes, whole_bytes = both_ways[True][2], both_ways[False][2]
    assert limited_bytes < 0.3 * whole_bytes, (limited_bytes, whole_bytes)


def test_a_platform_that_rejects_fields_gets_whole_records_with_one_warning(
    estate: Estate, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with QualysSimulator(estate, username=USER, password=PASSWORD, fields_supported=False) as sim:
        caplog.set_level(logging.WARNING, logger="qualys")
        result = synced(sim, tmp_path, limit_fields=True)
        searches = [r for r in sim.requests if r.endpoint in ("hostasset", "tag")]
    assert_matches_truth(read_latest(FolderSink(tmp_path)), estate)
    refused = [r for r in searches if "fields" in r.params]
    assert len(refused) == 1 and refused[0] is searches[0]  # asked once; every later search without it
    assert len([r for r in searches if r.endpoint == "hostasset"]) == result.pages + 1
    warnings = [r.getMessage() for r in caplog.records if "'fields'" in r.getMessage()]
    assert len(warnings) == 1 and "QUALYS_LIMIT_FIELDS=false" in warnings[0] and PASSWORD not in caplog.text


def test_id_ranges_with_limited_fields_equal_the_whole_sequential_run(
    estate: Estate, tmp_path: Path, both_ways: dict[bool, tuple[SyncResult, Path, int]]
) -> None:
    with QualysSimulator(estate, username=USER, password=PASSWORD) as sim:
        synced(sim, tmp_path, limit_fields=True, partitions=3)
        probes = [r for r in sim.requests if "startFromOffset" in r.params]
    assert probes and all(r.params["fields"] == "HostAsset" for r in probes)
    ranged, whole = read_latest(FolderSink(tmp_path)), read_latest(FolderSink(both_ways[False][1]))
    assert (ranged.devices, ranged.findings) == (whole.devices, whole.findings)


def test_the_fields_asked_for_are_what_the_parser_keeps() -> None:
    """The request named in docs/qualys-api.md §2.7; a parser field without a requested element would be lost."""
    assert fields_xml(HOSTASSET_FIELDS) == (
        "<HostAsset><id/><name/><created/><modified/><qwebHostId/><fqdn/><dnsHostName/><netbiosName/><address/><os/>"
        "<trackingMethod/><lastVulnScan/><agentInfo><agentId/></agentInfo>"
        "<tags><list><TagSimple><id/><name/></TagSimple></list></tags>"
        "<networkInterface><list><HostAssetInterface><address/><gatewayAddress/><macAddress/></HostAssetInterface>"
        "</list></networkInterface><sourceInfo/>"
        "<vuln><list><HostAssetVuln><firstFound/><hostInstanceVulnId/><lastFound/><qid/></HostAssetVuln></list></vuln>"
        "</HostAsset>"
    )
    assert fields_xml(TAG_FIELDS) == "<Tag><id/><criticalityScore/></Tag>"
    assert fields_xml(ID_FIELDS) == "<HostAsset><id/></HostAsset>"
    docs = (Path(__file__).resolve().parents[1] / "docs/qualys-api.md").read_text()
    for element in re.findall(r"<(\w+)/>", fields_xml(HOSTASSET_FIELDS)):
        assert f"<{element}/>" in docs, element
