"""Benchmark of the Log Analytics destination: the first delivery (the whole current state).

``python -m bench.log_delivery`` syncs the benchmark's estate (2,000 and 20,000 assets by default,
the same seed and page cache as ``bench.run``) into a folder with Qualys's latency off, then measures,
as its own process, the connector's delivery code as it runs in Azure: ``LogAnalyticsDelivery`` with
the client ``ingestion_client`` builds (the real ``LogsIngestionClient``, the connector's
``azure_credential`` getting its token from a stand-in of the Function App's managed identity endpoint),
sending to the TLS stand-in of the Logs Ingestion API on loopback. The stand-in only decompresses and
counts the rows here (``keep_rows=False``), so the figures are the connector's: wall, CPU, peak RSS,
rows per second, compressed bytes sent. Every row of the state must arrive, once.

``python -m bench.log_delivery deliver --output-dir DIR`` is the measured process (settings from the
environment, as in the Function App).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.page_cache import PageCache
from bench.page_cache import warm as warm_page_cache
from bench.run import (
    LIMITED_FIELDS,
    MB,
    MIB,
    PASSWORD,
    ROOT,
    SEED,
    USERNAME,
    BenchError,
    Measured,
    _sync_env,
    estate_clock,
    run_measured,
)
from qualys.api.knowledge_base import KB_BATCH_SIZE
from qualys_simulator.estate import Estate
from qualys_simulator.server import QualysSimulator
from tests.logs_ingestion_fake import RULE_ID, TOKEN, FakeLogsIngestion
from tests.managed_identity_fake import FakeManagedIdentity

#: Peak RSS of the 20,000-asset delivery may exceed the 2,000-asset one by at most this share.
RSS_GROWTH_LIMIT = 0.10


def deliver(output_dir: str) -> int:
    """The measured process: deliver what is pending in ``output_dir``; print the result as JSON."""
    from qualys.config.settings import SettingsReader, load_log_analytics
    from qualys.output.folder import FolderSink
    from qualys.output.log_delivery import LogAnalyticsDelivery, ingestion_client
    from qualys.output.runs import RunOutput

    target = load_log_analytics(SettingsReader())
    if target is None:
        raise SystemExit("LOG_ANALYTICS_ENDPOINT is not set")
    started = time.perf_counter()
    result = LogAnalyticsDelivery(RunOutput(FolderSink(output_dir)), target, ingestion_client(target)).deliver_pending()
    print(json.dumps({**result.summary(), "seconds": round(time.perf_counter() - started, 3)}))
    return 0


def _latest_manifest(out: Path) -> dict[str, Any]:
    latest = json.loads((out / "latest.json").read_text())
    manifest: dict[str, Any] = json.loads((out / "runs" / latest["run_id"] / "manifest.json").read_text())
    return manifest


def measure(assets: int, page_size: int, cache_dir: Path, work: Path) -> dict[str, Any]:
    estate = Estate.generate(assets=assets, seed=SEED, now=estate_clock())
    cache = PageCache(cache_dir / f"assets-{assets}-seed{SEED}-page{page_size}")
    out = work / f"out-{assets}"
    with QualysSimulator(estate, username=USERNAME, password=PASSWORD, page_cache=cache) as sim:
        in_window = estate.modified_after(estate.now - timedelta(days=estate.lookback_days))
        qids = sorted({f.qid for a in in_window for f in a.findings})
        kb_batches = [qids[i : i + KB_BATCH_SIZE] for i in range(0, len(qids), KB_BATCH_SIZE)]
        warm_page_cache(sim, cache, page_size=page_size, kb_batches=kb_batches, fields=LIMITED_FIELDS)
        env = _sync_env(sim, page_size, estate.lookback_days)
        sync = subprocess.run(
            [sys.executable, "-m", "qualys", "sync", "--output-dir", str(out), "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=False,
        )
        if sync.returncode != 0:
            raise BenchError(f"sync of {assets:,} assets failed: {sync.stderr.strip()[-2000:]}")
    manifest = _latest_manifest(out)
    devices, findings = int(manifest["current"]["devices"]), int(manifest["current"]["findings"])
    json_bytes = sum((out / f).stat().st_size for f in [*manifest["current"]["files"], *manifest["changes"]["files"]])
    with FakeLogsIngestion(work, keep_rows=False) as ingestion, FakeManagedIdentity({"https://monitor.azure.com": TOKEN}) as mi:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("QUALYS_", "OUTPUT_", "LOG_ANALYTICS_"))},
            "PYTHONPATH": str(ROOT), "LOG_ANALYTICS_ENDPOINT": ingestion.url, "LOG_ANALYTICS_RULE_ID": RULE_ID,
            "REQUESTS_CA_BUNDLE": str(ingestion.cert_path), **mi.environment(),
        }
        command = [sys.executable, "-m", "bench.log_delivery", "deliver", "--output-dir", str(out)]
        measured: Measured = run_measured(command, env, work)
        if measured.returncode != 0:
            raise BenchError(f"delivery of {assets:,} assets failed: {measured.stderr.strip()[-2000:]}")
        requests = ingestion.requests
        rows = {stream: ingestion.row_count(stream) for stream in Counter(r.stream for r in requests)}
    by_table = {stream.removeprefix("Custom-"): count for stream, count in rows.items()}
    if by_table.get("QualysDevices_CL") != devices or by_table.get("QualysFindings_CL") != findings:
        raise BenchError(f"rows {by_table} != the state's {devices:,} devices and {findings:,} findings")
    sent = sum(r.body_bytes for r in requests)
    return {
        "assets": assets, "devices": devices, "findings": findings, "rows": sum(rows.values()),
        "requests": len(requests), "refused": sum(r.status != 204 for r in requests),
        "mb_sent": sent / MB, "json_mb": json_bytes / MB,
        "wall": measured.wall, "cpu": measured.cpu, "rss_mib": measured.peak_rss / MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_delivery", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("deliver", help="the measured process")
    one.add_argument("--output-dir", required=True)
    parser.add_argument("--sizes", default="2000,20000", help="estate sizes, comma-separated (default 2000,20000)")
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--cache-dir", default=str(ROOT / "bench" / ".cache"))
    args = parser.parse_args(argv)
    if args.command == "deliver":
        return deliver(args.output_dir)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-la-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"[bench] {size:,} assets: sync, then the first delivery ...", file=sys.stderr, flush=True)
            results.append(measure(size, args.page_size, Path(args.cache_dir), Path(tmp)))
    print("first delivery to Log Analytics (the current state), real client, managed identity stand-in, loopback TLS")
    print(f"{'assets':>8} {'rows':>10} {'JSON MB':>8} {'MB sent':>8} {'calls':>6} {'wall s':>7} {'CPU s':>6}"
          f" {'rows/s':>8} {'RSS MiB':>8}")
    for r in results:
        print(f"{r['assets']:>8,} {r['rows']:>10,} {r['json_mb']:>8.1f} {r['mb_sent']:>8.1f} {r['requests']:>6}"
              f" {r['wall']:>7.2f} {r['cpu']:>6.2f} {r['rows'] / r['wall']:>8,.0f} {r['rss_mib']:>8.1f}")
    if len(results) > 1:
        small, large = results[0], results[-1]
        growth = large["rss_mib"] / small["rss_mib"] - 1
        verdict = "met" if growth <= RSS_GROWTH_LIMIT else "MISS"
        print(
            f"peak RSS {small['assets']:,} -> {large['assets']:,} assets: {growth:+.1%}"
            f" (target <= +{RSS_GROWTH_LIMIT:.0%}: {verdict})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
