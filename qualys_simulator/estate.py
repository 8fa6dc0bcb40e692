"""Deterministic data model of a Qualys subscription: host assets, tags and KnowledgeBase.

Everything is drawn from one seeded :class:`random.Random`, so the same arguments
always give the same estate (and, through :mod:`.render`, the same bytes). The mix
imitates the real qg3 recordings (docs/qualys-api.md §2.6): Cloud Agent hosts with MACs
and gateways per interface and ~600 software packages, scanner hosts with one LOCAL
interface, and cloud-connector hosts whose only MAC lives in the cloud ``sourceInfo``.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: Malformed or placeholder MACs seen in real data; rendered, never part of the truth.
#: JupiterOne's Azure sample (J1-FIX-AZURE in docs/qualys-api.md §8) really carries ``00-0D-3A-C4-8H-3F``.
NOISE_MACS: tuple[str, ...] = ("00:00:00:00:00:00", "00-00-00-00-00-00", "00-0D-3A-C4-8H-3F", "", "N/A")

#: (id, name, criticality). A fixed catalogue (not seeded) so a page can be rendered
#: without an estate at hand; names carry ``&`` and non-ASCII text on purpose.
TAG_CATALOGUE: tuple[tuple[int, str, int | None], ...] = (
    (14946065, "Cloud Agent", None),
    (14950673, "jupiterone-dev", None),
    (14950674, "VPN", 3),
    (14976728, "lifeomic-dev AWS", None),
    (14977040, "lifeomic-dev VPN", 4),
    (15001001, "AWS", None),
    (15001002, "Azure", None),
    (15001003, "GCP", None),
    (15001010, "Production", 4),
    (15001011, "Staging", 2),
    (15001012, "Development", 1),
    (15001020, "Business Critical", 5),
    (15001021, "PCI & Cardholder Data", 5),
    (15001022, "Finance & Accounting", 4),
    (15001023, "HR <confidential>", 3),
    (15001030, "Internet Facing", 4),
    (15001031, "DMZ", None),
    (15001040, "Zürich DC", 3),
    (15001041, "São Paulo Office", None),
    (15001042, "Frankfurt am Main", None),
    (15001050, "Windows Servers", None),
    (15001051, "Linux Servers", None),
    (15001052, "Workstations", 1),
    (15001060, "Database", 4),
    (15001061, "Web Tier", 3),
    (15001062, "Kubernetes Nodes", None),
    (15001070, "Owner: Ops-Team", None),
    (15001071, "Legacy (EOL)", 2),
    (15001072, "Scanner Appliance Targets", None),
    (15001073, "Crown Jewels ★", 5),
)
_PROVIDER_TAG = {"EC2": 15001001, "AZURE": 15001002, "GCP": 15001003}
_CLOUD_AGENT_TAG = 14946065


@dataclass(slots=True)
class SimTag:
    id: int
    name: str
    criticality: int | None  # 1..5, or None when the tag carries no score


@dataclass(slots=True)
class SimInterface:
    type: str  # LOCAL | PRIVATE | PUBLIC
    hostname: str | None
    interface_name: str | None
    interface_id: str | None
    address: str | None
    mac: str | None  # canonical lower-case aa:bb:cc:dd:ee:ff
    gateway: str | None


@dataclass(slots=True)
class SimCloudSource:
    provider: str  # EC2 | AZURE | GCP
    instance_id: str
    mac: str | None  # canonical
    private_ip: str | None
    public_ip: str | None
    region: str


@dataclass(slots=True)
class SimFinding:
    qid: int
    host_instance_vuln_id: int
    first_found: datetime
    last_found: datetime


@dataclass(slots=True)
class SimAsset:
    """One HostAsset.

    ``noise_macs`` are rendered but are not the asset's MACs: the first goes into the
    cloud ``sourceInfo`` ``macAddress`` when the cloud source has no real MAC, the rest
    become address-less pseudo interfaces (loopback, tunnel adapters).
    """

    id: int
    kind: str  # agent | scanner | cloud
    qweb_host_id: int | None
    agent_id: str | None
    name: str
    fqdn: str | None  # None = element absent, "" = empty element
    dns_host_name: str | None
    netbios_name: str | None
    address: str | None
    interfaces: list[SimInterface]
    cloud: SimCloudSource | None
    os: str | None
    tracking_method: str
    tag_ids: list[int]
    created: datetime
    modified: datetime
    last_vuln_scan: datetime | None
    findings: list[SimFinding]
    noise_macs: list[str] = field(default_factory=list)
    software_count: int = 0
    open_ports: list[int] = field(default_factory=list)


@dataclass(slots=True)
class SimVuln:
    qid: int
    vuln_type: str  # Vulnerability | Information Gathered | Potential Vulnerability
    severity: int
    title: str
    cve_ids: list[str]  # canonical: upper-case, unique, in order
    cvss_base: float | None
    cvss_v3_base: float | None
    published: datetime
    last_modified: datetime


class Estate:
    """Assets (ascending, non-contiguous ids), tags and the KnowledgeBase of one subscription."""

    def __init__(
        self,
        *,
        now: datetime,
        assets: dict[int, SimAsset],
        tags: dict[int, SimTag],
        kb: dict[int, SimVuln],
        seed: int = 7,
        lookback_days: int = 90,
        next_host_instance_vuln_id: int = 2_100_000_000,
    ) -> None:
        self.now = now
        self.assets = assets
        self.tags = tags
        self.kb = kb
        self.lookback_days = lookback_days
        # Mutations (touch/update_kb) draw from their own stream so they stay reproducible.
        self._rng = random.Random(seed * 7919 + 1)
        self._next_hvid = next_host_instance_vuln_id
        self._cve_serial = 90000

    @classmethod
    def generate(
        cls,
        *,
        assets: int,
        seed: int = 7,
        now: datetime | None = None,
        distinct_qids: int | None = None,
        qids_per_asset: int = 40,
        agent_share: float = 1 / 3,
        stale_share: float = 0.1,
        lookback_days: int = 90,
    ) -> Estate:
        """Build an estate; ``now`` defaults to the current UTC second (pass it for identical bytes)."""
        when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        n_qids = min(5000, distinct_qids if distinct_qids is not None else max(60, assets // 4))
        gen = _Generator(random.Random(seed), when, lookback_days)
        qid_pool = gen.qid_pool(n_qids)
        tags = {tid: SimTag(tid, name, crit) for tid, name, crit in TAG_CATALOGUE}
        sim_assets = gen.assets(assets, qid_pool, qids_per_asset, agent_share, stale_share)
        kb = gen.knowledge_base(qid_pool)
        referenced = sorted({f.qid for a in sim_assets.values() for f in a.findings})
        if referenced:
            # ~0.5% of referenced QIDs are unknown to the KB (retired/disabled QIDs).
            for qid in gen.rng.sample(referenced, max(1, round(len(referenced) * 0.005))):
                del kb[qid]
        return cls(
            now=when,
            assets=sim_assets,
            tags=tags,
            kb=kb,
            seed=seed,
            lookback_days=lookback_days,
            next_host_instance_vuln_id=gen.next_hvid,
        )

    @property
    def missing_qids(self) -> list[int]:
        """QIDs referenced by some asset but absent from the KB."""
        return sorted({f.qid for a in self.assets.values() for f in a.findings} - self.kb.keys())

    def touch(self, asset_ids: Iterable[int], when: datetime) -> None:
        """Make each asset look re-scanned at ``when``: modified, last_found bumped, one new finding."""
        when = when.astimezone(UTC).replace(microsecond=0)
        known_qids = sorted(self.kb)
        for asset_id in asset_ids:
            asset = self.assets[asset_id]
            asset.modified = when
            asset.last_vuln_scan = when
            for finding in asset.findings:
                finding.last_found = when
            have = {f.qid for f in asset.findings}
            candidates = [q for q in known_qids if q not in have]
            if candidates:
                self._next_hvid += 1
                asset.findings.append(SimFinding(self._rng.choice(candidates), self._next_hvid, when, when))

    def update_kb(self, qids: Iterable[int], when: datetime) -> None:
        """Revise KB entries: new title suffix, one more CVE, ``last_modified=when``. Unknown QIDs stay unknown."""
        when = when.astimezone(UTC).replace(microsecond=0)
        for qid in qids:
            vuln = self.kb.get(qid)
            if vuln is None:
                continue
            self._cve_serial += 1
            vuln.title += " (revised)"
            vuln.cve_ids.append(f"CVE-{when.year}-{self._cve_serial}")
            vuln.last_modified = when

    def fix(self, asset_ids: Iterable[int], when: datetime, share: float = 0.3) -> None:
        """Re-scan each asset at ``when`` with some of its findings gone (fixed): modified, last_found bumped."""
        when = when.astimezone(UTC).replace(microsecond=0)
        for asset_id in asset_ids:
            asset = self.assets[asset_id]
            asset.modified = asset.last_vuln_scan = when
            kept = [f for f in asset.findings if self._rng.random() >= share]
            for finding in kept:
                finding.last_found = when
            asset.findings = kept

    def rename(self, asset_ids: Iterable[int], when: datetime) -> None:
        """A contract field changes (the host name), nothing else: modified at ``when``."""
        when = when.astimezone(UTC).replace(microsecond=0)
        for asset_id in asset_ids:
            asset = self.assets[asset_id]
            asset.modified = when
            asset.name = f"{asset.name}-r{self._rng.randint(1, 999)}"

    def check_in(self, asset_ids: Iterable[int], when: datetime) -> None:
        """An agent check-in or a scan that found the same: only ``modified``/``last_vuln_scan``/``last_found`` move."""
        when = when.astimezone(UTC).replace(microsecond=0)
        for asset_id in asset_ids:
            asset = self.assets[asset_id]
            asset.modified = when
            if asset.last_vuln_scan is not None:
                asset.last_vuln_scan = when
            for finding in asset.findings:
                finding.last_found = when

    def delete(self, asset_ids: Iterable[int]) -> None:
        """Assets deleted in Qualys (or taken out of the API user's scope)."""
        for asset_id in list(asset_ids):
            del self.assets[asset_id]

    def add(self, count: int, when: datetime) -> list[int]:
        """New assets, modified at ``when``: copies of random existing ones under new (highest or free) ids."""
        when = when.astimezone(UTC).replace(microsecond=0)
        templates = [self.assets[i] for i in sorted(self.assets)]
        added: list[int] = []
        for _ in range(count):
            template = self._rng.choice(templates)
            asset_id = max(self.assets) + self._rng.randint(1, 40)
            if self._rng.random() < 0.5:  # some land between existing ids
                low = self._rng.choice(templates).id
                free = [i for i in range(low + 1, low + 40) if i not in self.assets]
                asset_id = free[0] if free else asset_id
            clone = copy.deepcopy(template)
            clone.id = asset_id
            clone.modified = clone.created = when
            if clone.agent_id is not None:
                clone.agent_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            for finding in clone.findings:
                self._next_hvid += 1
                finding.host_instance_vuln_id = self._next_hvid
            self.assets[asset_id] = clone
            added.append(asset_id)
        self.assets = dict(sorted(self.assets.items()))
        return added

    def modified_after(self, cutoff: datetime) -> list[SimAsset]:
        """Assets with ``modified`` strictly after ``cutoff``, by ascending id."""
        return [self.assets[i] for i in sorted(self.assets) if self.assets[i].modified > cutoff]


# --------------------------------------------------------------------------- generation

_LINUX_OS = (
    "Ubuntu Linux 16.04.6",
    "Ubuntu Linux 20.04.6 LTS",
    "Ubuntu Linux 22.04.3 LTS",
    "Amazon Linux 2",
    "CentOS Linux 7.9.2009",
    "Red Hat Enterprise Linux 8.8",
    "Debian GNU/Linux 11.7",
)
_WINDOWS_OS = (
    "Windows Server 2019 Datacenter 64 bit Edition Version 1809 Build 17763.3650",
    "Microsoft Windows Server 2016 Standard 64 bit Edition Version 1607 Build 14393.5582",
    "Microsoft Windows 10 Enterprise 64 bit Edition Version 21H2 Build 19044.2728",
    "Windows Server 2022 Datacenter 64 bit Edition Version 21H2 Build 20348.1607",
)
_ROLES = ("web", "db", "app", "api", "cache", "k8s-node", "build", "vpn", "mail", "jump", "etl", "kafka", "es", "ldap")
_ENVS = ("prod", "stg", "dev", "qa")
_DOMAINS = ("corp.example.com", "eu.contoso.local", "internal.acme.io", "ad.fabrikam.net")
_REGIONS = {
    "EC2": ("us-east-1", "us-west-2", "eu-west-1", "ap-south-1"),
    "AZURE": ("westeurope", "eastus2", "centralindia", "westus2"),
    "GCP": ("us-central1-a", "europe-west1-b", "asia-east1-c"),
}
_PORTS = (22, 80, 443, 3306, 5432, 8080, 8443, 68, 123, 111, 135, 139, 445, 3389, 5985, 9200, 6379, 25, 53)
_QID_RANGES = (
    (6, 6),
    (11, 11),
    (38000, 38999),
    (45000, 45600),
    (82000, 82100),
    (90000, 91999),
    (105000, 105999),
    (115000, 115999),
    (150000, 150600),
    (197000, 199000),
    (370000, 379999),
)


class _Generator:
    """Stateful helpers around one seeded RNG; only used by :meth:`Estate.generate`."""

    def __init__(self, rng: random.Random, now: datetime, lookback_days: int) -> None:
        self.rng = rng
        self.now = now
        self.lookback = timedelta(days=lookback_days)
        self.next_hvid = 1_977_366_268
        self._qweb = 92_661_485
        self._octets: set[tuple[int, int]] = set()

    # ---- small helpers
    def _ts(self, base: datetime, max_back: timedelta, min_back: timedelta = timedelta(0)) -> datetime:
        span = int((max_back - min_back).total_seconds())
        return base - min_back - timedelta(seconds=self.rng.randint(0, max(0, span)))

    def _mac(self, oui: str | None = None) -> str:
        prefix = oui or self.rng.choice(("06:51:78", "0e:ca:2a", "00:50:56", "00:15:5d", "3c:52:82", "f4:8e:38"))
        return prefix + "".join(f":{self.rng.randint(0, 255):02x}" for _ in range(3))

    def _private_ip(self) -> str:
        r = self.rng
        first = r.choice((10, 172, 192))
        if first == 10:
            return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
        if first == 172:
            return f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
        return f"192.168.{r.randint(0, 255)}.{r.randint(2, 254)}"

    def _public_ip(self) -> str:
        r = self.rng
        return (
            f"{r.choice((3, 13, 18, 20, 34, 35, 52, 54))}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        )

    def _ipv6(self) -> str:
        r = self.rng
        words = ":".join(f"{r.getrandbits(16):x}" for _ in range(4))
        return f"fe80::{words}" if r.random() < 0.6 else f"2001:db8:{r.getrandbits(16):x}::{r.getrandbits(16):x}"

    @staticmethod
    def _gateway(ip: str) -> str:
        parts = ip.split(".")
        return ".".join([*parts[:3], "1"])

    # ---- QIDs and KB
    def qid_pool(self, n: int) -> list[int]:
        """Distinct QIDs in popularity order (the first ones are found on most hosts)."""
        pool: list[int] = []
        seen: set[int] = set()
        weights = [min(hi - lo + 1, 400) for lo, hi in _QID_RANGES]
        while len(pool) < n:
            lo, hi = self.rng.choices(_QID_RANGES, weights)[0]
            qid = self.rng.randint(lo, hi)
            if qid not in seen:
                seen.add(qid)
                pool.append(qid)
        return pool

    def knowledge_base(self, qids: list[int]) -> dict[int, SimVuln]:
        kb = {}
        for qid in sorted(qids):
            kb[qid] = self._vuln(qid)
        return kb

    def _vuln(self, qid: int) -> SimVuln:
        r = self.rng
        roll = r.random()
        vuln_type = (
            "Information Gathered" if roll < 0.15 else "Potential Vulnerability" if roll < 0.25 else "Vulnerability"
        )
        published = self._ts(self.now, timedelta(days=365 * 20), timedelta(days=30))
        last_modified = published + (self.now - published) * r.random()
        last_modified = last_modified.replace(microsecond=0)
        if vuln_type == "Information Gathered":
            return SimVuln(qid, vuln_type, r.randint(1, 3), _ig_title(r, qid), [], None, None, published, last_modified)
        severity = r.choices((1, 2, 3, 4, 5), (1, 2, 4, 5, 4))[0]
        n_cve = r.choices((0, 1, r.randint(2, 12), r.randint(20, 60)), (25, 35, 35, 5))[0]
        cves: list[str] = []
        while len(cves) < n_cve:
            cve = f"CVE-{r.randint(max(1999, published.year - 2), published.year)}-{r.randint(1000, 49999)}"
            if cve not in cves:
                cves.append(cve)
        cvss_roll = r.random()
        v2 = r.choice((2.1, 4.3, 5.0, 6.8, 7.5, 9.3, 10.0)) if cvss_roll >= 0.3 else None
        v3 = r.choice((3.7, 5.3, 6.5, 7.5, 8.1, 8.8, 9.8)) if cvss_roll >= 0.55 else None
        return SimVuln(qid, vuln_type, severity, _vuln_title(r, qid), cves, v2, v3, published, last_modified)

    # ---- assets
    def assets(
        self, count: int, qid_pool: list[int], qids_per_asset: int, agent_share: float, stale_share: float
    ) -> dict[int, SimAsset]:
        cloud_share = (1 - agent_share) / 2
        # Agents carry more findings than scanner/cloud hosts; scale so the mean is qids_per_asset.
        raw = {"agent": 1.6, "scanner": 0.8, "cloud": 0.45}
        # Expected share of hosts with any finding: 4% have none, unscanned cloud hosts (40%) neither.
        norm = 0.96 * (agent_share * raw["agent"] + cloud_share * (raw["scanner"] + 0.6 * raw["cloud"]))
        means = {k: v * qids_per_asset / norm for k, v in raw.items()}
        out: dict[int, SimAsset] = {}
        asset_id = 62_390_000
        for _ in range(count):
            asset_id += self.rng.randint(1, 60)
            roll = self.rng.random()
            kind = "agent" if roll < agent_share else "scanner" if roll < agent_share + cloud_share else "cloud"
            out[asset_id] = self._asset(asset_id, kind, stale_share, means[kind], qid_pool)
        return out

    def _asset(self, asset_id: int, kind: str, stale_share: float, mean_qids: float, pool: list[int]) -> SimAsset:
        r = self.rng
        if r.random() < stale_share:
            modified = self._ts(self.now - self.lookback, timedelta(days=400), timedelta(days=1))
        else:
            # Skewed to recent; at least an hour inside the window so a run's own clock drift never matters.
            age = timedelta(seconds=60) + (self.lookback - timedelta(hours=1)) * (r.random() ** 1.5)
            modified = (self.now - age).replace(microsecond=0)
        created = self._ts(modified, timedelta(days=700))
        builder = {"agent": self._agent, "scanner": self._scanner, "cloud": self._cloud}[kind]
        asset = builder(asset_id, created, modified)
        self._assign_tags(asset)
        self._assign_findings(asset, mean_qids, pool)
        return asset

    def _names(self, windows: bool) -> tuple[str, str | None, str | None, str | None]:
        """(name, fqdn, dns_host_name, netbios) with the real-world gaps: empty fqdn, no DNS, ..."""
        r = self.rng
        short = f"{r.choice(_ROLES)}-{r.choice(_ENVS)}-{r.randint(1, 999):03d}"
        if windows:
            short = f"WIN-{r.getrandbits(28):07X}" if r.random() < 0.5 else short.upper()
        full = f"{short.lower()}.{r.choice(_DOMAINS)}"
        netbios: str | None = short.upper()[:15] if windows else None
        if windows and r.random() < 0.1:
            netbios = ""
        roll = r.random()
        if roll < 0.70:
            return short if windows else full, full, full, netbios
        if roll < 0.78:
            return short, "", full, netbios
        if roll < 0.85:
            return short, None, full, netbios
        if roll < 0.90:
            return full, full, None, netbios
        if roll < 0.95:
            return short, "", "", netbios
        return short, None, None, netbios

    def _agent(self, asset_id: int, created: datetime, modified: datetime) -> SimAsset:
        r = self.rng
        windows = r.random() < 0.3
        name, fqdn, dns, netbios = self._names(windows)
        address = self._private_ip()
        mac = self._mac()
        gateway = self._gateway(address)
        on_ec2 = r.random() < 0.4
        host = dns or fqdn or name
        if_name = "Primary network interface" if on_ec2 else ("Ethernet0" if windows else "eth0")
        eni = f"eni-{r.getrandbits(68):017x}" if on_ec2 else None
        interfaces = [SimInterface("PRIVATE" if on_ec2 else "LOCAL", host, if_name, eni, address, mac, gateway)]
        if r.random() < 0.3:  # one HostAssetInterface per address: same NIC, IPv6 address
            interfaces.append(SimInterface(interfaces[0].type, host, if_name, eni, self._ipv6(), mac, None))
        if r.random() < 0.15:  # second NIC, sometimes behind the same gateway
            ip2 = self._private_ip()
            gw2 = gateway if r.random() < 0.5 else self._gateway(ip2)
            interfaces.append(
                SimInterface("LOCAL", host, "eth1" if not windows else "Ethernet1", None, ip2, self._mac(), gw2)
            )
        cloud = None
        if on_ec2:
            pub = self._public_ip() if r.random() < 0.4 else None
            cloud = SimCloudSource("EC2", f"i-{r.getrandbits(68):017x}", mac, address, pub, r.choice(_REGIONS["EC2"]))
        noise = [r.choice(NOISE_MACS[:2])] if r.random() < 0.2 else []
        return SimAsset(
            id=asset_id,
            kind="agent",
            qweb_host_id=None if r.random() < 0.05 else self._next_qweb(),
            agent_id=str(uuid.UUID(int=r.getrandbits(128), version=4)),
            name=name,
            fqdn=fqdn,
            dns_host_name=dns,
            netbios_name=netbios,
            address=address,
            interfaces=interfaces,
            cloud=cloud,
            os=r.choice(_WINDOWS_OS if windows else _LINUX_OS),
            tracking_method="QAGENT",
            tag_ids=[_CLOUD_AGENT_TAG],
            created=created,
            modified=modified,
            last_vuln_scan=max(created, self._ts(modified, timedelta(days=2))),
            findings=[],
            noise_macs=noise,
            software_count=r.randint(460, 620),
            open_ports=sorted(r.sample(_PORTS, r.randint(3, 10))),
        )

    def _scanner(self, asset_id: int, created: datetime, modified: datetime) -> SimAsset:
        r = self.rng
        windows = r.random() < 0.25
        name, fqdn, dns, netbios = self._names(windows)
        address = self._private_ip()
        if not (fqdn or dns):
            name = address
        tracking = "DNSNAME" if dns and r.random() < 0.3 else "NETBIOS" if netbios and r.random() < 0.2 else "IP"
        interfaces = [SimInterface("LOCAL", dns or fqdn or None, None, None, address, None, None)]
        if r.random() < 0.1:
            interfaces.append(SimInterface("LOCAL", dns or fqdn or None, None, None, self._ipv6(), None, None))
        os_name = None if r.random() < 0.08 else r.choice(_WINDOWS_OS if windows else _LINUX_OS)
        return SimAsset(
            id=asset_id,
            kind="scanner",
            qweb_host_id=self._next_qweb(),
            agent_id=None,
            name=name,
            fqdn=fqdn,
            dns_host_name=dns,
            netbios_name=netbios,
            address=address,
            interfaces=interfaces,
            cloud=None,
            os=os_name,
            tracking_method=tracking,
            tag_ids=[],
            created=created,
            modified=modified,
            last_vuln_scan=max(created, self._ts(modified, timedelta(hours=1))),
            findings=[],
            open_ports=sorted(r.sample(_PORTS, r.randint(2, 8))),
        )

    def _cloud(self, asset_id: int, created: datetime, modified: datetime) -> SimAsset:
        r = self.rng
        provider = r.choices(("EC2", "AZURE", "GCP"), (5, 3, 2))[0]
        private = self._private_ip()
        public = self._public_ip() if r.random() < 0.5 else None
        region = r.choice(_REGIONS[provider])
        mac_share = {"EC2": 0.6, "AZURE": 0.8, "GCP": 0.9}[provider]
        mac = (
            self._mac({"EC2": "0a:1b:2c", "AZURE": "00:0d:3a", "GCP": "42:01:0a"}[provider])
            if r.random() < mac_share
            else None
        )
        noise: list[str] = []
        if mac is None and r.random() < 0.5:
            noise = [r.choice(NOISE_MACS[1:])]
        if provider == "EC2":
            instance_id = f"i-{r.getrandbits(68):017x}"
            dns = f"ip-{private.replace('.', '-')}.ec2.internal"
            name, tracking = (
                (instance_id if r.random() < 0.5 else f"{r.choice(_ROLES)}-{r.choice(_ENVS)}"),
                "INSTANCE_ID",
            )
        elif provider == "AZURE":
            instance_id = str(uuid.UUID(int=r.getrandbits(128), version=4))
            name = f"{r.choice(_ROLES)}-{r.choice(_ENVS)}-vm{r.randint(1, 99)}"
            dns, tracking = name, "VIRTUAL_MACHINE_ID"
        else:
            instance_id = str(r.getrandbits(62))
            name = f"gcp-{r.choice(_ROLES)}-{r.randint(1, 99)}"
            dns, tracking = f"{name}.c.project-{r.randint(100, 999)}.internal", "INSTANCE_ID"
        roll = r.random()
        fqdn: str | None = dns if roll < 0.6 else "" if roll < 0.75 else None
        dns_name: str | None = None if roll > 0.9 else dns
        eni = f"eni-{r.getrandbits(68):017x}" if provider == "EC2" else None
        if_name = "Primary network interface" if r.random() < 0.3 else None
        address = None if r.random() < 0.03 else private
        interfaces = [SimInterface("PRIVATE", dns_name, if_name, eni, private, None, None)]
        if public:
            interfaces.append(SimInterface("PUBLIC", dns_name, if_name, eni, public, None, None))
        cloud = SimCloudSource(provider, instance_id, mac, private, public, region)
        windows = r.random() < 0.2
        scanned = r.random() < 0.6
        return SimAsset(
            id=asset_id,
            kind="cloud",
            qweb_host_id=self._next_qweb() if scanned or r.random() < 0.5 else None,
            agent_id=None,
            name=name,
            fqdn=fqdn,
            dns_host_name=dns_name,
            netbios_name=None,
            address=address,
            interfaces=interfaces,
            cloud=cloud,
            os=None if r.random() < 0.1 else ("Windows" if windows else "Linux"),
            tracking_method=tracking,
            tag_ids=[_PROVIDER_TAG[provider]],
            created=created,
            modified=modified,
            last_vuln_scan=max(created, self._ts(modified, timedelta(hours=6))) if scanned else None,
            findings=[],
            noise_macs=noise,
        )

    def _next_qweb(self) -> int:
        self._qweb += self.rng.randint(1, 900)
        return self._qweb

    def _assign_tags(self, asset: SimAsset) -> None:
        r = self.rng
        if asset.kind == "scanner" and r.random() < 0.08:
            return  # real scanner hosts sometimes have no tags element at all
        fixed = set(asset.tag_ids)
        extra = [t for t, _, _ in TAG_CATALOGUE if t not in fixed and t not in _PROVIDER_TAG.values()]
        wanted = r.randint(1, 4) - len(asset.tag_ids)
        if wanted > 0:
            asset.tag_ids.extend(r.sample(extra, wanted))
        r.shuffle(asset.tag_ids)

    def _assign_findings(self, asset: SimAsset, mean: float, pool: list[int]) -> None:
        r = self.rng
        last_scan = asset.last_vuln_scan
        if last_scan is None or r.random() < 0.04:
            return
        size = len(pool)
        k = min(max(1, int(size * 0.6)), max(1, round(r.gauss(mean, mean * 0.35))))
        rand = r.random
        picked: set[int] = set()
        while len(picked) < k:
            # Squaring skews towards the front of the pool: a few QIDs are on most hosts.
            u = rand()
            picked.add(pool[int(size * u * u)])
        # A handful of shared scan times per host (real hosts share firstFound/lastFound values),
        # which also keeps 800k findings cheap: they point at the same few datetime objects.
        history = sorted({max(asset.created, self._ts(last_scan, timedelta(days=60))) for _ in range(4)})
        history.append(last_scan)
        n_hist = len(history)
        hvid = self.next_hvid
        findings = asset.findings
        for qid in sorted(picked):
            i = int(rand() * n_hist)
            last = last_scan if rand() < 0.9 else history[i + int(rand() * (n_hist - i))]
            findings.append(SimFinding(qid, hvid, history[i], last))
            hvid += 1 + int(rand() * 3)
        self.next_hvid = hvid


_VENDORS = (
    ("Apache", "HTTP Server"),
    ("OpenSSL", "OpenSSL"),
    ("Microsoft", "Windows"),
    ("Mozilla", "Firefox"),
    ("Oracle", "Java SE"),
    ("Canonical", "Ubuntu linux kernel"),
    ("Red Hat", "python3"),
    ("Google", "Chrome"),
    ("VMware", "Tools"),
    ("PHP", "PHP"),
)


def _vuln_title(r: random.Random, qid: int) -> str:
    vendor, product = r.choice(_VENDORS)
    style = r.randint(0, 6)
    if style == 0:
        return f"{vendor} {product} < {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 60)} Multiple Vulnerabilities"
    if style == 1:
        return f"{vendor} {product} Denial of Service & Information Disclosure (QID {qid})"
    if style == 2:
        return f"Ubuntu Security Notification for {product} Vulnerabilities (USN-{r.randint(3000, 6500)}-1)"
    if style == 3:
        return f"Red Hat Update for {product} (RHSA-{r.randint(2015, 2024)}:{r.randint(1000, 9999)})"
    if style == 4:
        return f"{vendor} {product} : Sécurité: exécution de code à distance (Zürich advisory {qid})"
    if style == 5:
        return f"Microsoft Windows Security Update for {r.choice(('March', 'June', 'Oktober'))} {r.randint(2018, 2024)}"
    return f"{vendor} {product} Remote Code Execution Vulnerability <CVE pending> ({qid})"


def _ig_title(r: random.Random, qid: int) -> str:
    base = r.choice(
        (
            "DNS Host Name",
            "Operating System Detected",
            "Open TCP Services List",
            "Traceroute",
            "Host Uptime Based on TCP TimeStamp Option",
            "Installed Packages & Versions",
        )
    )
    return f"{base} ({qid})"
