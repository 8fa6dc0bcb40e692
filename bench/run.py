"""``python -m bench.run``: the sync against the physical floor, on loopback, in one invocation.

For each size (default 20,000 assets, then 2,000): generate a simulated estate (fixed seed;
a third Cloud Agent hosts of ~100 KB, the rest scanner/cloud-connector hosts; ~40 QIDs per
asset over up to 5,000 QIDs; tags with criticality), start the Qualys simulator in this
process with Qualys's latency and ``/api/2.0/`` concurrency limit, pre-render every body the
sync will ask for into an on-disk page cache (``--cache-dir``), measure the simulator's
own throughput, then run as subprocesses, one after the other:

(a) the floor (:mod:`bench.floor`): the sync's requests on the best schedule the limits
    allow, every byte read and discarded;
(b) ``python -m qualys sync --output-dir <tmp> --json``: a full run, checked against the
    estate truth (device ids, device and finding counts) before any figure is printed;
(c) the same command again: an incremental run with nothing changed and a warm KB cache;
(d), (e) at the main size with ``--partitions K`` (default 4): the floor and the full sync with
    ``QUALYS_ASSET_PARTITIONS=K`` (K id ranges pulled at once);
(f), (g) at the main size (unless ``--skip-whole``): the floor and the full sync with
    ``QUALYS_LIMIT_FIELDS=false`` (whole host asset records, the bytes field limiting saves);
(h) with ``--profile``: (b) again under cProfile (every thread, CPU time) into a new folder.

Each phase is measured on its whole process tree: wall time, peak RSS (VmRSS of the process
and its descendants summed every 20 ms; at least the largest VmHWM), CPU seconds (user+sys
from ``getrusage(RUSAGE_CHILDREN)``); bytes and requests by endpoint come from the
simulator's request log. The estate's clock is set 31-36 minutes in the past so that the
full window and the incremental overlap both see exactly the generated changes.

    .venv/bin/python -m bench.run                     # 20,000 + 2,000 assets, Qualys latencies
    .venv/bin/python -m bench.run --assets 5000 --skip-small --profile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pstats
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from defusedxml.ElementTree import fromstring

from bench.page_cache import PageCache
from bench.page_cache import warm as warm_page_cache
from qualys.api.hostasset_search import HOSTASSET_FIELDS
from qualys.api.knowledge_base import KB_BATCH_SIZE
from qualys.api.qps import fields_xml
from qualys.api.tags import TAG_BATCH_SIZE
from qualys.timestamps import parse_datetime
from qualys_simulator.estate import Estate
from qualys_simulator.qps import FieldTree, field_tree
from qualys_simulator.server import Latency, QualysSimulator

ROOT = Path(__file__).resolve().parent.parent
SEED = 7
USERNAME = "bench-user"
PASSWORD = "bench-password"  # noqa: S105 - the local simulator's credential
#: The estate's "now" lies 31-36 minutes behind the wall clock (rounded down to 5 minutes, so a
#: re-run soon after reuses the page cache): more than the sync's 30-minute incremental overlap,
#: so an incremental run sees no change, and less than the generator's 59-minute margin between the
#: oldest in-window asset and the window's edge, so every full run sees the same assets.
ESTATE_AGE = timedelta(minutes=31)
ESTATE_CLOCK_STEP_MINUTES = 5
MAX_ESTATE_AGE = timedelta(minutes=58)
SAMPLE_SECONDS = 0.02
MB = 1_000_000
#: Built-ins whose time is waiting, not work: kept out of the profile's self-time ranking.
_BLOCKING = re.compile(r"acquire|recv|sleep|wait|select|poll|SimpleQueue' objects|connect|getaddrinfo|sendall|fsync")
MIB = 1024 * 1024
#: The ``<fields>`` the sync asks for, as the simulator (and its page cache) reads them.
LIMITED_FIELDS: FieldTree = field_tree(fromstring(f"<fields>{fields_xml(HOSTASSET_FIELDS)}</fields>"))["HostAsset"] or {}


class BenchError(Exception):
    """The benchmark cannot report figures (a phase failed or produced a wrong result)."""


# --------------------------------------------------------------------------- process-tree measurement


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                out.extend(int(x) for x in handle.read().split())
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [pid], [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.append(child)
                todo.append(child)
    return seen


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; zeros for a process that is gone or a zombie."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeSampler(threading.Thread):
    """Polls the RSS of a process and all its descendants; keeps the largest sum."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.samples = 0
        self.processes: set[int] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(SAMPLE_SECONDS)

    def sample(self) -> None:
        total = 0
        for pid in _tree(self.pid):
            rss, hwm = _memory_kib(pid)
            total += rss
            if hwm:
                self.processes.add(pid)
                self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), hwm)
        self.peak_kib = max(self.peak_kib, total)
        self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    @property
    def peak_bytes(self) -> int:
        """The sampled peak of the tree, never below the high-water mark of its largest process."""
        return 1024 * max(self.peak_kib, max(self.hwm_kib.values(), default=0))


@dataclass
class Measured:
    returncode: int
    wall: float
    cpu: float
    peak_rss: int
    processes: int
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], env: dict[str, str], workdir: Path, timeout: float | None = None) -> Measured:
    """Run ``cmd`` to completion; wall, CPU (user+sys of the waited-for tree) and peak RSS of the tree."""
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=ROOT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            sampler.stop()
            raise BenchError(f"{' '.join(cmd[1:4])} did not finish within {timeout:.0f} s") from None
        wall = time.perf_counter() - started
        sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(
        returncode=returncode,
        wall=wall,
        cpu=cpu,
        peak_rss=sampler.peak_bytes,
        processes=len(sampler.processes),
        stdout=out_path.read_text("utf-8", "replace"),
        stderr=err_path.read_text("utf-8", "replace"),
    )


# --------------------------------------------------------------------------- one size


@dataclass
class Phase:
    name: str
    measured: Measured
    devices: int
    findings: int
    bytes_received: int
    requests: Counter[str]
    refused: int  # non-200 answers (e.g. 409 concurrency refusals)
    cache_rendered: int
    cache_render_seconds: float
    cache_served: int
    detail: dict[str, Any] = field(default_factory=dict)
    #: Id ranges of the host asset search (QUALYS_ASSET_PARTITIONS); a sync compares with the floor of the same.
    partitions: int = 1
    is_floor: bool = False
    #: Asked Qualys for whole records (QUALYS_LIMIT_FIELDS=false); compared with the floor of the same.
    whole: bool = False


@dataclass
class SizeResult:
    assets: int
    lookback_days: int
    in_window: int
    findings: int
    qids: int
    tags: int
    pages_min: int
    kb_min: int
    tag_min: int
    phases: list[Phase]
    notes: list[str]
    profile_lines: list[str]
    #: main (all phases), small (memory comparison), state (a large state: full then 1% changed, no floor)
    kind: str = "main"


def estate_clock() -> datetime:
    when = datetime.now(UTC) - ESTATE_AGE
    return when.replace(minute=when.minute - when.minute % ESTATE_CLOCK_STEP_MINUTES, second=0, microsecond=0)


def _check_clock(estate: Estate) -> None:
    age = datetime.now(UTC) - estate.now
    if age >= MAX_ESTATE_AGE:
        raise BenchError(
            f"the estate's clock is {age} behind: a sync window would no longer match the generated changes; "
            "run a smaller or faster benchmark"
        )


def _base_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("QUALYS_", "OUTPUT_")) and k != "KEY_VAULT_URL"
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _sync_env(sim: QualysSimulator, page_size: int, lookback_days: int) -> dict[str, str]:
    env = _base_env()
    env.update(
        QUALYS_API_URL=sim.url,
        QUALYS_USERNAME=USERNAME,
        QUALYS_PASSWORD=PASSWORD,
        QUALYS_PAGE_SIZE=str(page_size),
        QUALYS_LOOKBACK_DAYS=str(lookback_days),
        QUALYS_MAX_RETRY_WAIT_SECONDS="600",
    )
    return env


@dataclass
class Verification:
    mode: str
    modified_after: str
    devices: int
    findings: int


def verify_output(out_dir: Path, estate: Estate, summary: dict[str, Any]) -> Verification:
    """The run that ``latest.json`` points at holds exactly the truth's devices and findings."""
    try:
        return _verify(out_dir, estate, summary)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"the sync's output cannot be read back: {type(exc).__name__}: {exc}") from exc


def _verify(out_dir: Path, estate: Estate, summary: dict[str, Any]) -> Verification:
    latest = json.loads((out_dir / "latest.json").read_text("utf-8"))
    manifest = json.loads((out_dir / latest["manifest"]).read_text("utf-8"))
    if manifest.get("status") != "complete":
        raise BenchError(f"the sync's manifest is not complete: {manifest.get('status')!r}")
    cutoff = parse_datetime(str(manifest["window"]["modified_after"]))
    if cutoff is None:
        raise BenchError(f"unreadable window in the manifest: {manifest['window']!r}")
    expected = estate.modified_after(cutoff)
    expected_ids = {str(a.id) for a in expected}
    expected_findings = sum(len(a.findings) for a in expected)
    ids: set[str] = set()
    device_lines = finding_lines = 0
    for path in manifest["files"]:
        data = (out_dir / path).read_bytes()
        if "/devices/" in path:
            for line in data.splitlines():
                device_lines += 1
                ids.add(str(json.loads(line)["asset_id"]))
        else:
            finding_lines += data.count(b"\n")
    problems = []
    if ids != expected_ids or device_lines != len(expected_ids):
        problems.append(
            f"devices: {device_lines} lines, {len(ids)} ids; truth {len(expected_ids)} "
            f"(missing {len(expected_ids - ids)}, unexpected {len(ids - expected_ids)})"
        )
    if finding_lines != expected_findings:
        problems.append(f"findings: {finding_lines} lines, truth {expected_findings}")
    if manifest["counts"] != {"devices": device_lines, "findings": finding_lines}:
        problems.append(f"manifest counts {manifest['counts']} do not match the files")
    if summary.get("devices") != device_lines or summary.get("findings") != finding_lines:
        problems.append(f"summary says {summary.get('devices')} devices / {summary.get('findings')} findings")
    problems += _verify_state(out_dir, manifest, estate)
    if problems:
        raise BenchError("the sync's output is wrong: " + "; ".join(problems))
    return Verification(str(manifest["mode"]), str(manifest["window"]["modified_after"]), device_lines, finding_lines)


def _verify_state(out_dir: Path, manifest: dict[str, Any], estate: Estate) -> list[str]:
    """The current state holds exactly the estate's assets in scope, with all their findings (no deletions here)."""
    current = manifest["current"]
    scope = parse_datetime(str(current["modified_after"]))
    if scope is None:
        return [f"unreadable state scope {current['modified_after']!r}"]
    expected = estate.modified_after(scope)
    ids: list[str] = []
    finding_lines = 0
    for path in current["files"]:
        data = (out_dir / path).read_bytes()
        if "/current/devices/" in path:
            ids += [str(json.loads(line)["asset_id"]) for line in data.splitlines()]
        else:
            finding_lines += data.count(b"\n")
    problems = []
    if ids != [str(a.id) for a in expected]:
        problems.append(f"current state: {len(ids)} devices, truth {len(expected)} (or not in asset id order)")
    if finding_lines != sum(len(a.findings) for a in expected) or current["findings"] != finding_lines:
        problems.append(f"current state: {finding_lines} findings, truth {sum(len(a.findings) for a in expected)}")
    return problems


#: Share of the in-window assets a "1% changed" phase re-scans (new finding, dates moved) before its incremental run.
CHANGED_SHARE = 0.01
#: Peak RSS of the 20,000-asset full sync before runs kept a current state (bench/README.md): every sync
#: of every size must stay within 10% of it.
REFERENCE_RSS_MIB = 38.2


def change_share(estate: Estate, share: float) -> str:
    """Re-scan ``share`` of the in-window assets now (a new finding each, dates moved); what it did, for the notes."""
    in_window = estate.modified_after(estate.now - timedelta(days=estate.lookback_days))
    chosen = random.Random(SEED).sample([a.id for a in in_window], max(1, round(len(in_window) * share)))
    estate.touch(chosen, datetime.now(UTC) - timedelta(seconds=5))
    return f"before the 1% phase: {len(chosen):,} of {len(in_window):,} in-window assets re-scanned (a new finding each)"


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    raise BenchError("no JSON summary on stdout")


class SizeBench:
    def __init__(self, args: argparse.Namespace, assets: int, kind: str) -> None:
        self.args = args
        self.assets = assets
        self.kind = kind
        self.main_size = kind == "main"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"qualys-bench-{assets}-"))
        self.probe_rate = 0.0
        self.cache: PageCache | None = None

    def log(self, message: str) -> None:
        print(f"[{self.assets:,} assets] {message}", file=sys.stderr, flush=True)

    def run(self) -> SizeResult:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self) -> SizeResult:
        if self.kind == "state":
            return self._run_state()
        args = self.args
        started = time.perf_counter()
        estate = Estate.generate(assets=self.assets, seed=SEED, now=estate_clock())
        in_window = estate.modified_after(estate.now - timedelta(days=estate.lookback_days))
        qids = sorted({f.qid for a in in_window for f in a.findings})
        tag_ids = sorted({t for a in in_window for t in a.tag_ids})
        findings = sum(len(a.findings) for a in in_window)
        notes: list[str] = []
        self.log(f"estate generated in {time.perf_counter() - started:.1f} s: {len(in_window):,} in window")
        latency = Latency(
            hostasset=args.hostasset_latency, tag=args.tag_latency, kb=args.kb_latency, count=args.count_latency
        )
        cache_dir = Path(args.cache_dir) / f"assets-{self.assets}-seed{SEED}-page{args.page_size}"
        cache = self.cache = PageCache(cache_dir)
        sim = QualysSimulator(
            estate,
            username=USERNAME,
            password=PASSWORD,
            concurrency_limit=args.concurrency,
            rate_limit=args.rate_limit,
            latency=latency,
            page_cache=cache,
        )
        with sim:
            kb_batches = [qids[i : i + KB_BATCH_SIZE] for i in range(0, len(qids), KB_BATCH_SIZE)]
            whole = self.main_size and not args.skip_whole
            if whole:  # the same pages as whole records, for phases (f) and (g)
                warm_page_cache(sim, cache, page_size=args.page_size)
            warm = warm_page_cache(sim, cache, page_size=args.page_size, kb_batches=kb_batches, fields=LIMITED_FIELDS)
            rate = f", {warm.rendered_bytes / MB / warm.render_seconds:,.0f} MB/s" if warm.render_seconds else ""
            notes.append(
                f"page cache {cache_dir}: {warm.pages} hostasset pages ({warm.hostasset_bytes / MB:,.1f} MB) and "
                f"{warm.kb_batches} KB batches ({warm.kb_bytes / MB:,.1f} MB) ready in {warm.seconds:.1f} s; "
                f"{warm.rendered} rendered ({warm.rendered_bytes / MB:,.1f} MB in {warm.render_seconds:.1f} s{rate}), "
                f"{warm.reused} reused from disk"
            )
            self.log(notes[-1])
            plan = self.workdir / "plan.json"
            plan.write_text(
                json.dumps(
                    {
                        "page_size": args.page_size,
                        "lookback_days": estate.lookback_days,
                        "tag_ids": tag_ids,
                        "qids": qids,
                        "kb_batch_size": KB_BATCH_SIZE,
                        "concurrency": args.concurrency,
                    }
                ),
                "utf-8",
            )
            env = _sync_env(sim, args.page_size, estate.lookback_days)
            notes.append(self._probe(sim, plan, env, warm.pages))
            self.log(notes[-1])
            phases = [self._floor(sim, plan, env)]
            out = self.workdir / "output"
            sync_cmd = [sys.executable, "-m", "qualys", "sync", "--output-dir", str(out), "--json"]
            phases.append(self._sync(sim, estate, "(b) sync, full", sync_cmd, env, out))
            phases.append(self._sync(sim, estate, "(c) sync, incremental", sync_cmd, env, out))
            k = args.partitions
            if k > 1 and self.main_size:
                notes.append(self._warm_ranges(sim, plan, env, k))
                self.log(notes[-1])
                phases.append(self._floor(sim, plan, env, k))
                ranged_out = self.workdir / "output-ranges"
                ranged_cmd = [*sync_cmd[:5], str(ranged_out), "--json"]
                ranged_env = {**env, "QUALYS_ASSET_PARTITIONS": str(k)}
                phases.append(self._sync(sim, estate, f"(e) sync, full, {k} ranges", ranged_cmd, ranged_env, ranged_out))
                phases[-1].partitions = k
            if whole:
                whole_env = {**env, "QUALYS_LIMIT_FIELDS": "false"}
                phases.append(self._floor(sim, plan, whole_env, name="(f) floor, whole records"))
                whole_out = self.workdir / "output-whole"
                whole_cmd = [*sync_cmd[:5], str(whole_out), "--json"]
                phases.append(self._sync(sim, estate, "(g) sync, full, whole records", whole_cmd, whole_env, whole_out))
                for phase in phases[-2:]:
                    phase.whole = True
            profile_lines: list[str] = []
            if args.profile and self.main_size:
                prof_file = self.workdir / "sync.prof"
                prof_out = self.workdir / "output-profiled"
                cmd = [sys.executable, "-m", "bench.profile_sync", str(prof_file), *sync_cmd[3:5], str(prof_out), "--json"]
                profile_env = {**env, "BENCH_PROFILE_CLOCK": args.profile_clock}
                profiled = self._sync(sim, estate, "(h) sync, full, profiled", cmd, profile_env, prof_out)
                phases.append(profiled)
                profile_lines = self._profile_report(prof_file, profiled, phases[1])
            if self.main_size:  # last: it changes the estate
                notes.append(change_share(estate, CHANGED_SHARE))
                phases.append(self._sync(sim, estate, "(i) sync, incremental, 1% changed", sync_cmd, env, out))
            removed = cache.prune()
            if removed:
                notes.append(f"page cache: removed {removed} bodies of earlier estates")
        floor = phases[0]
        needed = floor.bytes_received / floor.measured.wall
        notes.insert(0, f"floor schedule: {self._schedule(floor)}")
        notes.append(
            f"the floor consumed {needed / MB:,.1f} MB/s on average: the simulator's headroom is "
            f"{self.probe_rate / max(needed, 1.0):,.0f}x"
        )
        return SizeResult(
            assets=self.assets,
            lookback_days=estate.lookback_days,
            in_window=len(in_window),
            findings=findings,
            qids=len(qids),
            tags=len(tag_ids),
            pages_min=max(1, math.ceil(len(in_window) / args.page_size)),
            kb_min=math.ceil(len(qids) / KB_BATCH_SIZE),
            tag_min=math.ceil(len(tag_ids) / TAG_BATCH_SIZE),
            phases=phases,
            notes=notes,
            profile_lines=profile_lines,
        )

    def _run_state(self) -> SizeResult:
        """A large state: a full sync (the baseline state), then an incremental one with 1% of the assets changed.

        Qualys's latency is cut to ``--state-latency`` (the point is the state's cost, not Qualys's pace); no floor.
        """
        args = self.args
        estate = Estate.generate(assets=self.assets, seed=SEED, now=estate_clock())
        in_window = estate.modified_after(estate.now - timedelta(days=estate.lookback_days))
        qids = sorted({f.qid for a in in_window for f in a.findings})
        tag_ids = sorted({t for a in in_window for t in a.tag_ids})
        seconds = args.state_latency
        cache_dir = Path(args.cache_dir) / f"assets-{self.assets}-seed{SEED}-page{args.page_size}"
        cache = self.cache = PageCache(cache_dir)
        latency = Latency(hostasset=seconds, kb=seconds, tag=seconds, count=seconds)
        notes = [f"latency {seconds} s per request of any kind (--state-latency): the state's cost, not Qualys's pace"]
        with QualysSimulator(
            estate, username=USERNAME, password=PASSWORD, concurrency_limit=args.concurrency,
            rate_limit=args.rate_limit, latency=latency, page_cache=cache,
        ) as sim:
            kb_batches = [qids[i : i + KB_BATCH_SIZE] for i in range(0, len(qids), KB_BATCH_SIZE)]
            warm = warm_page_cache(sim, cache, page_size=args.page_size, kb_batches=kb_batches, fields=LIMITED_FIELDS)
            notes.append(f"page cache {cache_dir}: {warm.pages} hostasset pages ready in {warm.seconds:.1f} s")
            self.log(notes[-1])
            env = _sync_env(sim, args.page_size, estate.lookback_days)
            out = self.workdir / "output"
            sync_cmd = [sys.executable, "-m", "qualys", "sync", "--output-dir", str(out), "--json"]
            name = f"state of {self.assets:,}"
            phases = [self._sync(sim, estate, f"(j) sync, full, {name}", sync_cmd, env, out)]
            notes.append(change_share(estate, CHANGED_SHARE))
            phases.append(self._sync(sim, estate, f"(k) sync, incremental, 1% changed, {name}", sync_cmd, env, out))
            cache.prune()
        return SizeResult(
            assets=self.assets, lookback_days=estate.lookback_days, in_window=len(in_window),
            findings=sum(len(a.findings) for a in in_window), qids=len(qids), tags=len(tag_ids),
            pages_min=max(1, math.ceil(len(in_window) / args.page_size)), kb_min=math.ceil(len(qids) / KB_BATCH_SIZE),
            tag_min=math.ceil(len(tag_ids) / TAG_BATCH_SIZE), phases=phases, notes=notes, profile_lines=[], kind="state",
        )

    # ---- phases
    def _reset(self, sim: QualysSimulator) -> None:
        sim.reset_log()
        sim.reset_rate_window()
        if self.cache is not None:
            self.cache.reset_stats()

    def _phase(self, sim: QualysSimulator, name: str, cmd: Sequence[str], env: dict[str, str]) -> tuple[Phase, Measured]:
        _check_clock(sim.estate)
        self._reset(sim)
        self.log(f"{name} ...")
        measured = run_measured(cmd, env, self.workdir, self.args.phase_timeout)
        records = sim.requests
        stats = self.cache.stats if self.cache is not None else None
        phase = Phase(
            name=name,
            measured=measured,
            devices=0,
            findings=0,
            bytes_received=sum(r.bytes_sent for r in records),
            requests=Counter(r.endpoint for r in records),
            refused=sum(1 for r in records if r.status != 200),
            cache_rendered=stats.rendered if stats else 0,
            cache_render_seconds=stats.render_seconds if stats else 0.0,
            cache_served=stats.hits if stats else 0,
        )
        if measured.returncode != 0:
            output = f"{measured.stderr.strip()[-3000:]}\n{measured.stdout.strip()[-2000:]}"
            raise BenchError(f"{name} failed (exit {measured.returncode}):\n{output}")
        self.log(f"{name}: {measured.wall:.2f} s wall, {measured.cpu:.2f} s CPU, {measured.peak_rss / MIB:.0f} MiB peak RSS")
        return phase, measured

    def _unmeasured_floor(self, sim: QualysSimulator, plan: Path, env: dict[str, str], what: str, *args: str) -> Measured:
        """``bench.floor`` with the server latency off, outside the table (throughput probe, cache warm-up)."""
        saved, sim.latency = sim.latency, Latency()
        try:
            self._reset(sim)
            cmd = [sys.executable, "-m", "bench.floor", "--plan", str(plan), *args]
            measured = run_measured(cmd, env, self.workdir, self.args.phase_timeout)
        finally:
            sim.latency = saved
        if measured.returncode != 0:
            raise BenchError(f"{what} failed:\n{measured.stderr.strip()[-3000:]}{measured.stdout[-1000:]}")
        return measured

    def _probe(self, sim: QualysSimulator, plan: Path, env: dict[str, str], pages: int) -> str:
        """Raw read of a few cached pages with the latency off: the simulator's own delivery rate."""
        measured = self._unmeasured_floor(sim, plan, env, "throughput probe", "--probe", str(min(pages, 30)))
        probe = _last_json(measured.stdout)
        self.probe_rate = probe["bytes"] / probe["seconds"] if probe["seconds"] else float("inf")
        rendered = self.cache.stats.rendered if self.cache else 0
        return (
            f"simulator throughput: {self.probe_rate / MB:,.0f} MB/s served from the page cache over loopback "
            f"({probe['pages']} pages, {probe['bytes'] / MB:,.1f} MB read back to back in {probe['seconds']:.3f} s, "
            f"latency off, {rendered} rendered)"
        )

    def _floor(self, sim: QualysSimulator, plan: Path, env: dict[str, str], partitions: int = 1, name: str = "") -> Phase:
        cmd = [sys.executable, "-m", "bench.floor", "--plan", str(plan), "--partitions", str(partitions)]
        name = name or ("(a) floor" if partitions <= 1 else f"(d) floor, {partitions} ranges")
        phase, measured = self._phase(sim, name, cmd, env)
        phase.detail = _last_json(measured.stdout)
        phase.partitions, phase.is_floor = partitions, True
        return phase

    def _warm_ranges(self, sim: QualysSimulator, plan: Path, env: dict[str, str], partitions: int) -> str:
        """Render the id-range pages into the page cache (latency off, not measured): they differ from the chain's."""
        measured = self._unmeasured_floor(sim, plan, env, "id-range warm-up", "--partitions", str(partitions))
        stats = self.cache.stats if self.cache is not None else None
        rendered = f"{stats.rendered} rendered in {stats.render_seconds:.1f} s, {stats.hits} from disk" if stats else ""
        return f"page cache for {partitions} id ranges ready in {measured.wall:.1f} s ({rendered})"

    def _sync(self, sim: QualysSimulator, estate: Estate, name: str, cmd: Sequence[str], env: dict[str, str], out: Path) -> Phase:
        phase, measured = self._phase(sim, name, cmd, env)
        summary = _last_json(measured.stdout)
        checked = verify_output(out, estate, summary)
        phase.devices, phase.findings = checked.devices, checked.findings
        phase.detail = {"summary": summary, "mode": checked.mode, "modified_after": checked.modified_after}
        self.log(f"{name}: output verified ({checked.mode}, {checked.devices:,} devices, {checked.findings:,} findings)")
        return phase

    def _schedule(self, floor: Phase) -> str:
        detail = floor.detail
        spans: dict[str, list[float]] = detail.get("spans", {})
        requests: dict[str, int] = detail.get("requests", {})
        parts = []
        for endpoint, label in (("hostasset", "hostasset chain"), ("kb", "KnowledgeBase"), ("tag", "tag search")):
            if endpoint in spans:
                first, last = spans[endpoint]
                parts.append(f"{label} {requests.get(endpoint, 0)} req at {first:.2f}-{last:.2f} s")
        retries = detail.get("retries", 0)
        return (
            "all three streams start at t=0 (next page on the previous page's <lastId>; "
            f"KB {self.args.concurrency} at a time): " + ", ".join(parts) + (f"; {retries} KB 409 retries" if retries else "")
        )

    def _profile_report(self, prof_file: Path, profiled: Phase, unprofiled: Phase) -> list[str]:
        stats = pstats.Stats(str(prof_file))
        raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
        per_k = 1000 / max(1, profiled.devices)
        clock = (
            "CPU time per thread" if self.args.profile_clock == "cpu"
            else "wall time per thread (includes waiting for the GIL, network and locks)"
        )
        lines = [
            f"CPU seconds per 1,000 assets: {unprofiled.measured.cpu * per_k:.2f} (run b, unprofiled), "
            f"{profiled.measured.cpu * per_k:.2f} (profiled run d); profile clock: {clock}",
        ]
        skip = ("threading.py", "concurrent/futures/thread.py", "bench/profile_sync.py", "runpy.py")

        def label(key: tuple[str, int, str]) -> str:
            filename, line, func = key
            if filename == "~":
                return func
            short = filename
            for marker in ("/site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
                if marker in short:
                    short = short.split(marker, 1)[1]
            return f"{short}:{line}({func})"

        rows = [(key, value) for key, value in raw.items() if not key[0].endswith(skip) and key[2] != "<module>"]
        waits = [(k, v) for k, v in rows if k[0] == "~" and _BLOCKING.search(k[2])]
        work = [(k, v) for k, v in rows if not (k[0] == "~" and _BLOCKING.search(k[2]))]
        for title, index in (("cumulative", 3), ("total (self)", 2)):
            lines.append(f"top 10 functions by {title} time (seconds, calls), all threads, blocking built-ins left out:")
            ranked = sorted(work, key=lambda kv: kv[1][index], reverse=True)[:10]
            for key, (_, ncalls, tottime, cumtime, _) in ranked:
                lines.append(f"  {cumtime if index == 3 else tottime:8.2f}  {ncalls:>10,}  {label(key)}")
        if waits:
            top = sorted(waits, key=lambda kv: kv[1][2], reverse=True)[:4]
            lines.append("blocking calls (self time): " + ", ".join(f"{label(k)} {v[2]:.1f} s" for k, v in top))
        return lines


# --------------------------------------------------------------------------- report


def _fmt_requests(requests: Counter[str]) -> str:
    known = ("hostasset", "kb", "tag")  # other: the partition probe's count call
    other = sum(n for endpoint, n in requests.items() if endpoint not in known)
    return " / ".join(str(requests.get(e, 0)) for e in known) + f" / {other}"


def render_table(result: SizeResult, args: argparse.Namespace) -> list[str]:
    reference = next(p for p in result.phases if not p.is_floor)  # the full sync's counts, so the floor's rates compare
    header = (
        "phase", "wall s", "assets/s", "findings/s", "MB recv", "requests ha/kb/tag/other", "peak RSS MiB", "CPU s", "x floor"
    )
    rows: list[tuple[str, ...]] = []
    for phase in result.phases:
        devices = reference.devices if phase.is_floor else phase.devices
        findings = reference.findings if phase.is_floor else phase.findings
        wall = phase.measured.wall
        rows.append(
            (
                phase.name,
                f"{wall:.2f}",
                f"{devices / wall:,.0f}",
                f"{findings / wall:,.0f}",
                f"{phase.bytes_received / MB:,.1f}",
                _fmt_requests(phase.requests),
                f"{phase.measured.peak_rss / MIB:,.1f}",
                f"{phase.measured.cpu:.2f}",
                _x_floor(result, phase),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [
        "",
        f"== {result.assets:,} assets: {result.in_window:,} in the {result.lookback_days}-day window, "
        f"{result.findings:,} findings, {result.qids:,} distinct QIDs, {result.tags} tags; page size {args.page_size}",
        f"   latency: hostasset {args.hostasset_latency} s/page, KnowledgeBase {args.kb_latency} s/batch, "
        f"tag {args.tag_latency} s/search, count {args.count_latency} s; /api/2.0/ concurrency {args.concurrency}",
        "",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
    ]
    out += [f"   {note}" for note in result.notes]
    for phase in result.phases:
        extra = []
        if phase.refused:
            extra.append(f"{phase.refused} non-200 answers")
        rendered = f"rendered {phase.cache_rendered}" + (
            f" ({phase.cache_render_seconds:.2f} s)" if phase.cache_rendered else ""
        )
        extra.append(f"simulator served {phase.cache_served} bodies from its page cache, {rendered}")
        if "summary" in phase.detail:
            summary = phase.detail["summary"]
            extra.append(f"mode {phase.detail['mode']}, window > {phase.detail['modified_after']}")
            if summary.get("retries"):
                extra.append(f"{summary['retries']} client retries")
        extra.append(f"{phase.measured.processes} process(es)")
        out.append(f"   {phase.name}: " + "; ".join(extra))
    out.append(
        "   correctness: OK (devices and findings of every sync equal the estate truth for its window, "
        "and its current state the truth for the lookback)"
    )
    out += state_targets(result) if result.kind == "state" else targets(result)
    if result.profile_lines:
        out.append("")
        out += [f"   {line}" for line in result.profile_lines]
    return out


def _x_floor(result: SizeResult, phase: Phase) -> str:
    floors = [p for p in result.phases if p.is_floor and (p.partitions, p.whole) == (phase.partitions, phase.whole)]
    return f"{phase.measured.wall / floors[0].measured.wall:.2f}" if floors else "-"


def floor_of(result: SizeResult, phase: Phase) -> Phase:
    """The floor a phase is compared with: the same requests (id ranges, fields)."""
    return next(p for p in result.phases if p.is_floor and (p.partitions, p.whole) == (phase.partitions, phase.whole))


def targets(result: SizeResult) -> list[str]:
    floor, full, incremental = result.phases[0], result.phases[1], result.phases[2]
    minimum = Counter({"hostasset": result.pages_min, "kb": result.kb_min, "tag": result.tag_min})
    ratio = full.measured.wall / floor.measured.wall
    rss = full.measured.peak_rss / MIB
    inc_total = sum(incremental.requests.values())

    def verdict(ok: bool) -> str:
        return "met " if ok else "MISS"

    cpu_per_k = full.measured.cpu / max(1, full.devices) * 1000
    return [
        "   targets (measured only):",
        f"     [{verdict(ratio <= 1.1)}] sync wall <= 1.1 x floor: {ratio:.2f} x",
        f"     [{verdict(cpu_per_k <= 0.8)}] sync CPU <= 0.8 s per 1,000 assets: {cpu_per_k:.2f} s",
        f"     [{verdict(rss <= 150)}] sync peak RSS <= 150 MiB: {rss:.1f} MiB",
        *_whole_targets(result, verdict),
        f"     [{verdict(full.requests == minimum)}] full sync requests = minimum "
        f"(ha/kb/tag {_fmt_requests(minimum)}): {_fmt_requests(full.requests)}",
        f"     [{verdict(inc_total <= 3)}] incremental, nothing changed, <= 3 requests: {inc_total}",
        *([f"     [{verdict(incremental.measured.wall < 5)}] incremental, nothing changed, under 5 s: "
           f"{incremental.measured.wall:.2f} s"] if result.kind == "main" else []),
        *_range_targets(result, verdict),
        *_state_rss_targets(result, verdict),
    ]


def _state_rss_targets(result: SizeResult, verdict: Callable[[bool], str]) -> list[str]:
    """Every sequential sync within 10% of the reference peak RSS (the state must not cost memory)."""
    limit = REFERENCE_RSS_MIB * 1.1
    syncs = [p for p in result.phases if not p.is_floor and p.partitions == 1 and "profiled" not in p.name]
    worst = max(syncs, key=lambda p: p.measured.peak_rss)
    return [
        f"     [{verdict(worst.measured.peak_rss / MIB <= limit)}] every sync's peak RSS <= {limit:.1f} MiB "
        f"(reference {REFERENCE_RSS_MIB} + 10%): highest {worst.measured.peak_rss / MIB:.1f} MiB, {worst.name}"
    ]


def state_targets(result: SizeResult) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met " if ok else "MISS"

    return ["   targets (measured only):", *_state_rss_targets(result, verdict)]


def _whole_targets(result: SizeResult, verdict: Callable[[bool], str]) -> list[str]:
    """Field limiting: bytes against whole records, and the whole-record sync against its own floor."""
    whole = [p for p in result.phases if p.whole and not p.is_floor]
    if not whole:
        return []
    limited, sync = result.phases[1], whole[0]
    share = limited.bytes_received / max(1, sync.bytes_received)
    ratio = sync.measured.wall / floor_of(result, sync).measured.wall
    return [
        f"     [{verdict(share <= 0.25)}] MB received with field limiting <= 25% of whole records: "
        f"{limited.bytes_received / MB:,.1f} of {sync.bytes_received / MB:,.1f} MB ({share:.0%})",
        f"     [{verdict(ratio <= 1.1)}] whole-record sync wall <= 1.1 x its floor: {ratio:.2f} x",
    ]


def _range_targets(result: SizeResult, verdict: Callable[[bool], str]) -> list[str]:
    ranged = [p for p in result.phases if p.partitions > 1 and not p.is_floor]
    if not ranged:
        return []
    sync, floor, sequential = ranged[0], floor_of(result, ranged[0]), result.phases[1]
    k = sync.partitions
    # the minimum with k ranges: the probe (1 count + k-1 one-record searches) and at most one partial page per range
    ha_max = result.pages_min + 2 * (k - 1)
    ha, other = sync.requests.get("hostasset", 0), sum(n for e, n in sync.requests.items() if e not in ("hostasset", "kb", "tag"))
    ok = ha <= ha_max and other <= 1 and sync.requests.get("kb") == result.kb_min and sync.requests.get("tag") == result.tag_min
    ratio = sync.measured.wall / floor.measured.wall
    return [
        f"     [{verdict(ratio <= 1.1)}] {k}-range sync wall <= 1.1 x {k}-range floor: {ratio:.2f} x "
        f"({sequential.measured.wall / sync.measured.wall:.1f} x faster than the sequential sync)",
        f"     [{verdict(sync.measured.peak_rss / MIB <= 150)}] {k}-range sync peak RSS <= 150 MiB: "
        f"{sync.measured.peak_rss / MIB:.1f} MiB",
        f"     [{verdict(ok)}] {k}-range requests: hostasset <= {ha_max} (pages + probe + one partial page per range), "
        f"1 count, KB and tag at the minimum: {_fmt_requests(sync.requests)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assets", type=int, default=20_000, help="estate size of the main run (default 20000)")
    parser.add_argument("--small", type=int, default=2_000, help="estate size of the memory comparison run (default 2000)")
    parser.add_argument("--skip-small", action="store_true", help="run the main size only")
    parser.add_argument("--page-size", type=int, default=200, help="QUALYS_PAGE_SIZE (default 200)")
    parser.add_argument("--hostasset-latency", type=float, default=0.5, help="server seconds per hostasset page (0.5)")
    parser.add_argument("--kb-latency", type=float, default=0.5, help="server seconds per KnowledgeBase call (0.5)")
    parser.add_argument("--tag-latency", type=float, default=0.2, help="server seconds per tag search (0.2)")
    parser.add_argument("--count-latency", type=float, default=0.5, help="server seconds per host asset count (0.5)")
    parser.add_argument(
        "--partitions", type=int, default=4,
        help="also run floor and sync with this many id ranges (QUALYS_ASSET_PARTITIONS) at the main size; 1: skip (4)",
    )
    parser.add_argument(
        "--skip-whole", action="store_true",
        help="skip phases (f) and (g): floor and sync asking for whole records (QUALYS_LIMIT_FIELDS=false)",
    )
    parser.add_argument(
        "--state-assets", type=int, default=100_000,
        help="also sync an estate this large, full then with 1%% changed, for the current state's cost; 0: skip (100000)",
    )
    parser.add_argument(
        "--state-latency", type=float, default=0.02, help="server seconds per request of the --state-assets run (0.02)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="/api/2.0/ concurrency limit (default 2)")
    parser.add_argument("--rate-limit", type=int, default=300, help="/api/2.0/ calls per hour, reset per phase (300)")
    parser.add_argument("--cache-dir", default=str(ROOT / "bench" / ".cache"), help="page cache folder (bench/.cache)")
    parser.add_argument("--phase-timeout", type=float, default=1800, help="seconds before a phase counts as hung (1800)")
    parser.add_argument("--profile", action="store_true", help="also profile a full sync (cProfile, all threads)")
    parser.add_argument(
        "--profile-clock", choices=("wall", "cpu"), default="wall",
        help="profiler clock: wall (cheap; includes waits) or cpu (per-thread CPU time; several times slower)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sizes = [(args.assets, "main")] + ([] if args.skip_small else [(args.small, "small")])
    if args.state_assets:
        sizes.append((args.state_assets, "state"))
    results: list[SizeResult] = []
    try:
        for size, kind in sizes:
            results.append(SizeBench(args, size, kind).run())
            for line in render_table(results[-1], args):
                print(line, flush=True)
    except BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    compared = [r for r in results if r.kind != "state"]
    if len(compared) == 2:
        big, small = (r.phases[1].measured.peak_rss / MIB for r in compared)
        print(
            f"\npeak RSS of the full sync: {compared[0].assets:,} assets {big:.1f} MiB, "
            f"{compared[1].assets:,} assets {small:.1f} MiB; ratio {big / small:.2f} "
            f"[{'met ' if big <= small * 1.1 else 'MISS'}] within 10%"
        )
    print(f"\nbenchmark total: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
