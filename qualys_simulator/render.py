"""Qualys XML bodies, built as strings in the element names and order of real qg3 responses.

String building (not ElementTree) because benchmarks render tens of thousands of ~100 KB
agent hosts; the bulky software lists are pre-rendered once per process. The per-asset
quirks (padded dates, ``<fqdn/>`` vs ``<fqdn></fqdn>``, upper-case/dashed MACs, nested
``ec2InstanceTags/tags`` lists, duplicated and lower-case CVE ids) are derived from the ids,
so the same estate always renders the same bytes.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeElementTree

from .estate import TAG_CATALOGUE, SimAsset, SimCloudSource, SimInterface, SimTag, SimVuln
from .qps import FieldTree

_HOST = "https://qualysapi.qg3.apps.qualys.com"
_DateFmt = Callable[[datetime], str]
_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_KB_DOCTYPE = (
    '<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT SYSTEM "'
    f'{_HOST}/api/2.0/fo/knowledge_base/vuln/knowledge_base_vuln_list_output.dtd">\n'
)
_EVAL_COMMENT = "<!-- This report was generated with an evaluation version of Qualys //--> \n"
_CONFIDENTIAL = (
    '<!-- CONFIDENTIAL AND PROPRIETARY INFORMATION. Qualys provides the QualysGuard Service "As Is," without any '
    "warranty of any kind. Qualys makes no warranty that the information contained in this report is complete or "
    "error-free. Copyright {year}, Qualys, Inc. //--> \n"
)
#: What Qualys streams ahead of the XML declaration while a slow KB query runs.
KEEPALIVE_PREFIX = b"\n \n  \n   \n"


def iso(dt: datetime) -> str:
    """Qualys response date form: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mix(n: int) -> int:
    """Cheap deterministic hash of an id, used to pick per-record rendering quirks."""
    return ((n * 2654435761) ^ (n >> 7)) & 0xFFFFFFFF


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _mac_style(mac: str, upper: bool, dashes: bool) -> str:
    out = mac.upper() if upper else mac
    return out.replace(":", "-") if dashes else out


def _qps_open(xsd: str) -> str:
    return f'{_DECL}<ServiceResponse {_XSI} xsi:noNamespaceSchemaLocation="{_HOST}/qps/xsd/{xsd}">\n'


# --------------------------------------------------------------------------- software pool

_DEB_NAMES = (
    "ncurses-base libx11-data telnet diffutils procps initscripts libstdc++6 linux-aws-headers libxmuu1 eject git "
    "ubuntu-release-upgrader-core libxslt1.1 unzip libwrap0 distro-info-data dns-root-data ltrace iputils-tracepath "
    "make libpam-systemd mdadm libmpdec2 libfuse2 libfreetype6 update-manager-core openssl openssh-server curl wget "
    "python3 python3-apt perl bash coreutils systemd sudo rsyslog cron vim nano less gzip tar bzip2 xz-utils zlib1g "
    "libssl1.1 libcurl4 libc6 libgcc1 libsqlite3-0 libxml2 libpcre3 libsystemd0 libudev1 dbus apt dpkg grub-pc "
    "linux-image linux-modules linux-headers snapd cloud-init netplan.io iproute2 iptables nftables tzdata "
    "ca-certificates gnupg libgnutls30 libkrb5-3 libldap-2.4-2 libsasl2-2 libnss3 libexpat1 libyaml-0-2 nginx "
    "apache2 mysql-client postgresql-client redis-tools docker-ce containerd.io runc libseccomp2 libcap2"
)
_DEB = tuple(_DEB_NAMES.split())
_DEB_SUFFIXES = ("", ":amd64", "-common", "-data", "-dev", "-doc", "-bin", "-utils", ":i386", "-dbg")
_WIN_NAMES = (
    "Microsoft Visual C++ 2015-2022 Redistributable|Microsoft Edge|Google Chrome|Mozilla Firefox|7-Zip|"
    "Notepad++|Microsoft Office Professional Plus|Adobe Acrobat Reader DC|VMware Tools|Microsoft .NET Framework|"
    "Microsoft SQL Server Management Studio|Java 8 Update|Python Launcher|Git|PuTTY|WinSCP|AT&T Global Network Client|"
    "Microsoft Teams|Zoom|Cisco AnyConnect Secure Mobility Client|CrowdStrike Windows Sensor|"
    "Qualys Cloud Security Agent|Microsoft OneDrive|Windows Driver Package - Intel Net|"
    "Update for Windows (KB5005565)|Lenovo Vantage|Dell Command Update|"
    "Sophos Endpoint Agent|Wireshark|Npcap|Microsoft Azure CLI|AWS Command Line Interface v2|Herramientas de España|"
    "Logiciel de sécurité|Deutsches Sprachpaket (Österreich)|Citrix Workspace|SAP GUI for Windows|Oracle VM VirtualBox"
)
_WIN = tuple(_WIN_NAMES.split("|"))
_WIN_SUFFIXES = ("", " (x64)", " (x86)", " - 10.0.40219", " MUI", " Language Pack", " Update Service", " Helper")


def _software_item(name: str, version: str) -> str:
    return (
        "          <HostAssetSoftware>\n"
        f"            <name>{escape(name)}</name>\n"
        f"            <version>{escape(version)}</version>\n"
        "          </HostAssetSoftware>\n"
    )


@functools.cache
def _software_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pre-rendered ``HostAssetSoftware`` records: (Linux packages, Windows programs)."""
    rng = random.Random(20200423)
    linux = []
    for base in _DEB:
        for suffix in _DEB_SUFFIXES:
            epoch = f"{rng.randint(1, 3)}:" if rng.random() < 0.2 else ""
            upstream = f"{epoch}{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
            version = f"{upstream}-{rng.randint(1, 9)}ubuntu0.{rng.randint(1, 24)}.04.{rng.randint(1, 9)}"
            linux.append(_software_item(base + suffix, version))
    windows = []
    for base in _WIN:
        for suffix in _WIN_SUFFIXES:
            for edition in ("", " 2019", " 2022"):
                version = f"{rng.randint(1, 30)}.{rng.randint(0, 9)}.{rng.randint(0, 99999)}"
                windows.append(_software_item(base + edition + suffix, version))
    rng.shuffle(linux)
    rng.shuffle(windows)
    return tuple(linux), tuple(windows)


def _software(asset: SimAsset, windows: bool) -> str:
    pool = _software_pools()[1 if windows else 0]
    count = min(asset.software_count, len(pool))
    start = _mix(asset.id) % len(pool)
    items = pool[start : start + count]
    if len(items) < count:
        items = items + pool[: count - len(items)]
    return "".join(items)


# --------------------------------------------------------------------------- hostasset


def render_hostasset_page(
    assets: Sequence[SimAsset],
    *,
    has_more: bool,
    last_id: int | None,
    tags: Mapping[int, SimTag] | None = None,
    fields: FieldTree | None = None,
) -> bytes:
    """One ``/search/am/hostasset`` page. ``tags`` names the TagSimple ids (default: the fixed catalogue);
    ``fields`` (the request's ``<fields><HostAsset>``) keeps only the elements asked for."""
    if not assets:
        return (_qps_open("2.0/am/hostasset.xsd") + _SUCCESS_EMPTY).encode()
    names = {t.id: t.name for t in tags.values()} if tags is not None else _CATALOGUE_NAMES
    dates: dict[datetime, str] = {}
    parts = [
        _qps_open("2.0/am/hostasset.xsd"),
        f"  <responseCode>SUCCESS</responseCode>\n  <count>{len(assets)}</count>\n",
        f"  <hasMoreRecords>{'true' if has_more else 'false'}</hasMoreRecords>\n",
    ]
    if has_more and last_id is not None:
        parts.append(f"  <lastId>{last_id}</lastId>\n")
    parts.append("  <data>\n")
    for asset in assets:
        if fields is None:
            _host_asset(asset, names, dates, parts)
        else:
            whole: list[str] = []
            _host_asset(asset, names, dates, whole, fields)
            parts.append(limited("".join(whole), fields, level=2))
    parts.append("  </data>\n</ServiceResponse>")
    return "".join(parts).encode()


def limited(element_xml: str, fields: FieldTree, level: int) -> str:
    """``element_xml`` with only the children ``fields`` asks for (recursively), re-indented at ``level``.

    The simulator's reading of Qualys's "Limit your results" (docs/qualys-api.md §2.7): an element
    named with no children is kept whole; one named with children keeps only those; others go.
    """
    root = SafeElementTree.fromstring(element_xml)
    _keep_only(root, fields)
    ElementTree.indent(root, space="  ", level=level)
    return "  " * level + ElementTree.tostring(root, encoding="unicode") + "\n"


def _keep_only(node: ElementTree.Element, fields: FieldTree) -> None:
    for child in list(node):
        if child.tag not in fields:
            node.remove(child)
        elif (inner := fields[child.tag]) is not None:
            _keep_only(child, inner)


def render_count(count: int) -> bytes:
    """A ``/count/am/hostasset`` answer: the number of matching records, no data."""
    body = f"  <responseCode>SUCCESS</responseCode>\n  <count>{count}</count>\n</ServiceResponse>"
    return (_qps_open("2.0/am/hostasset.xsd") + body).encode()


_SUCCESS_EMPTY = "  <responseCode>SUCCESS</responseCode>\n  <count>0</count>\n</ServiceResponse>"
_CATALOGUE_NAMES = {tid: name for tid, name, _ in TAG_CATALOGUE}


def _opt(tag: str, value: str | None, h: int, indent: str = "      ") -> str:
    """An optional text element: absent for None, ``<x/>`` or ``<x></x>`` for "" (both occur)."""
    if value is None:
        return ""
    if value == "":
        return f"{indent}<{tag}/>\n" if h & 1 else f"{indent}<{tag}></{tag}>\n"
    return f"{indent}<{tag}>{escape(value)}</{tag}>\n"


def _host_asset(
    a: SimAsset, tag_names: Mapping[int, str], dates: dict[datetime, str], out: list[str], fields: FieldTree | None = None
) -> None:
    """Appends one ``<HostAsset>``; with ``fields``, the bulky lists nobody asked for are not even rendered."""
    h = _mix(a.id)

    def wanted(*names: str) -> bool:
        return fields is None or any(name in fields for name in names)

    windows = bool(a.os and "Windows" in a.os)
    agent = a.kind == "agent"

    def d(dt: datetime) -> str:
        s = dates.get(dt)
        if s is None:
            s = dates[dt] = iso(dt)
        return s

    created = f"  {d(a.created)}" if h % 13 == 2 else d(a.created)
    modified = f"\n      {d(a.modified)}" if h % 9 == 4 else d(a.modified)
    out.append(
        f"    <HostAsset>\n      <id>{a.id}</id>\n      <name>{escape(a.name)}</name>\n"
        f"      <created>{created}</created>\n      <modified>{modified}</modified>\n      <type>HOST</type>\n"
    )
    if a.tag_ids:
        out.append("      <tags>\n        <list>\n")
        for tid in a.tag_ids:
            out.append(
                f"          <TagSimple>\n            <id>{tid}</id>\n"
                f"            <name>{escape(tag_names.get(tid, f'Tag {tid}'))}</name>\n          </TagSimple>\n"
            )
        out.append("        </list>\n      </tags>\n")
    elif a.kind != "scanner":
        out.append("      <tags>\n        <list/>\n      </tags>\n")
    if a.cloud is not None:
        noise = a.noise_macs[0] if a.cloud.mac is None and a.noise_macs else None
        out.append(_source_info(a, a.cloud, noise, d))
    elif agent and h % 2:
        out.append(
            "      <sourceInfo>\n        <list>\n          <AssetSource/>\n        </list>\n      </sourceInfo>\n"
        )
    if a.qweb_host_id is not None:
        out.append(f"      <qwebHostId>{a.qweb_host_id}</qwebHostId>\n")
    if agent:
        out.append(f"      <lastComplianceScan>{d(a.modified)}</lastComplianceScan>\n")
    if a.last_vuln_scan is not None:
        scan = d(a.last_vuln_scan) + ("\n      " if h % 11 == 7 else "")
        out.append(f"      <lastVulnScan>{scan}</lastVulnScan>\n")
    if agent:
        out.append(f"      <lastSystemBoot>{d(a.created)}</lastSystemBoot>\n")
        out.append(f"      <lastLoggedOnUser>{'Administrator' if windows else 'ubuntu'}</lastLoggedOnUser>\n")
    out.append(_opt("fqdn", a.fqdn, h))
    out.append(_opt("os", a.os, h))
    out.append(_opt("dnsHostName", a.dns_host_name, h >> 1))
    out.append(_opt("netbiosName", a.netbios_name, h >> 2))
    if agent:
        out.append(_agent_info(a, windows, h, d))
        out.append(f"      <networkGuid>{_guid(h)}</networkGuid>\n")
    out.append(_opt("address", a.address, h))
    out.append(f"      <trackingMethod>{a.tracking_method}</trackingMethod>\n")
    if agent:
        out.append(
            "      <manufacturer>Xen</manufacturer>\n      <model>HVM domU</model>\n"
            f"      <totalMemory>{1024 * (1 + h % 16)}</totalMemory>\n      <timezone>UTC</timezone>\n"
            "      <biosDescription>Xen 4.2.amazon 08/24/2006</biosDescription>\n"
        )
    empty_lists = h % 3 == 0
    if not wanted("openPort"):
        pass
    elif a.open_ports:
        out.append("      <openPort>\n        <list>\n")
        for port in a.open_ports:
            proto = "UDP" if port in (68, 123, 161) else "TCP"
            out.append(
                f"          <HostAssetOpenPort>\n            <port>{port}</port>\n"
                f"            <protocol>{proto}</protocol>\n          </HostAssetOpenPort>\n"
            )
        out.append("        </list>\n      </openPort>\n")
    elif empty_lists:
        out.append("      <openPort>\n        <list/>\n      </openPort>\n")
    if not wanted("software"):
        pass
    elif a.software_count:
        out.append("      <software>\n        <list>\n")
        out.append(_software(a, windows))
        out.append("        </list>\n      </software>\n")
    elif empty_lists:
        out.append("      <software>\n        <list/>\n      </software>\n")
    if a.findings:
        out.append("      <vuln>\n        <list>\n")
        for f in a.findings:
            out.append(
                f"          <HostAssetVuln>\n            <qid>{f.qid}</qid>\n"
                f"            <hostInstanceVulnId>{f.host_instance_vuln_id}</hostInstanceVulnId>\n"
                f"            <firstFound>{d(f.first_found)}</firstFound>\n"
                f"            <lastFound>{d(f.last_found)}</lastFound>\n          </HostAssetVuln>\n"
            )
        out.append("        </list>\n      </vuln>\n")
    elif empty_lists:
        out.append("      <vuln>\n        <list/>\n      </vuln>\n")
    if agent and wanted("processor", "volume", "account"):
        out.append(_agent_inventory(windows, h))
    out.append(_interfaces(a, windows))
    if a.cloud is None or a.cloud.provider != "AZURE":
        out.append(f"      <isDockerHost>{'true' if h % 17 == 1 else 'false'}</isDockerHost>\n")
    out.append("    </HostAsset>\n")


def _guid(h: int) -> str:
    x = f"{(h * 0x9E3779B97F4A7C15) & ((1 << 128) - 1):032x}"
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _agent_info(a: SimAsset, windows: bool, h: int, d: _DateFmt) -> str:
    platform = "Windows" if windows else "LINUX_UBUNTU" if a.os and "Ubuntu" in a.os else "LINUX"
    return (
        "      <agentInfo>\n"
        f"        <agentVersion>{'4.8.0.31' if windows else '2.4.0.71'}</agentVersion>\n"
        f"        <agentId>{a.agent_id}</agentId>\n"
        f"        <status>{'STATUS_INACTIVE' if h % 23 == 5 else 'STATUS_ACTIVE'}</status>\n"
        f"        <lastCheckedIn>{d(a.modified)}</lastCheckedIn>\n"
        f"        <connectedFrom>{a.address or ''}</connectedFrom>\n"
        "        <chirpStatus>Inventory Scan Complete</chirpStatus>\n"
        f"        <platform>{platform}</platform>\n"
        "        <activatedModule>AGENT_PC,AGENT_VM</activatedModule>\n"
        "        <manifestVersion>\n          <vm>VULNSIGS-VM-2.4.873.2-1</vm>\n"
        "          <pc>VULNSIGS-PC-2.4.873.2-1</pc>\n        </manifestVersion>\n"
        "        <agentConfiguration>\n          <id>403002</id>\n"
        "          <name>My Config Profile &amp; Defaults</name>\n        </agentConfiguration>\n"
        "        <activationKey>\n          <activationId>c14b0e30-8526-4dc4-b770-b2773b7120c4</activationId>\n"
        "          <title>production agents</title>\n        </activationKey>\n"
        "      </agentInfo>\n"
    )


def _agent_inventory(windows: bool, h: int) -> str:
    users = ("Administrator", "svc_backup", "Guest") if windows else ("root", "ubuntu", "www-data", "nobody")
    vols = ("C:", "D:") if windows else ("/", "/run", "/dev/shm", "/boot", "/var/lib/docker")  # noqa: S108 - names
    parts = [
        "      <processor>\n        <list>\n          <HostAssetProcessor>\n"
        "            <name>Intel(R) Xeon(R) CPU E5-2676 v3 @ 2.40GHz</name>\n            <speed>2400</speed>\n"
        "          </HostAssetProcessor>\n        </list>\n      </processor>\n      <volume>\n        <list>\n"
    ]
    for i, vol in enumerate(vols):
        size = 1 << (30 + (h + i) % 6)
        parts.append(
            f"          <HostAssetVolume>\n            <name>{vol}</name>\n            <size>{size}</size>\n"
            f"            <free>{size // (2 + i)}</free>\n          </HostAssetVolume>\n"
        )
    parts.append("        </list>\n      </volume>\n      <account>\n        <list>\n")
    for user in users:
        parts.append(
            f"          <HostAssetAccount>\n            <username>{user}</username>\n          </HostAssetAccount>\n"
        )
    parts.append("        </list>\n      </account>\n")
    return "".join(parts)


def _interface(i: SimInterface, mac: str | None) -> str:
    s = "          <HostAssetInterface>\n"
    if i.hostname:
        s += f"            <hostname>{escape(i.hostname)}</hostname>\n"
    if i.interface_id:
        s += f"            <interfaceId>{i.interface_id}</interfaceId>\n"
    if i.interface_name:
        s += f"            <interfaceName>{escape(i.interface_name)}</interfaceName>\n"
    if mac is not None:
        s += f"            <macAddress>{escape(mac)}</macAddress>\n"
    s += f"            <type>{i.type}</type>\n"
    if i.address:
        s += f"            <address>{i.address}</address>\n"
    if i.gateway:
        s += f"            <gatewayAddress>{i.gateway}</gatewayAddress>\n"
    return s + "          </HostAssetInterface>\n"


_PSEUDO_IFACES = ("Loopback Pseudo-Interface 1", "Microsoft Teredo Tunneling Adapter", "lo", "docker0")


def _interfaces(a: SimAsset, windows: bool) -> str:
    if not a.interfaces and not a.noise_macs:
        return "      <networkInterface>\n        <list/>\n      </networkInterface>\n"
    parts = ["      <networkInterface>\n        <list>\n"]
    for i in a.interfaces:
        parts.append(_interface(i, _mac_style(i.mac, windows, False) if i.mac else None))
    # Noise MACs not consumed by the cloud source become address-less pseudo interfaces.
    skip = 1 if a.cloud is not None and a.cloud.mac is None else 0
    for n, noise in enumerate(a.noise_macs[skip:]):
        name = _PSEUDO_IFACES[(a.id + n) % len(_PSEUDO_IFACES)]
        parts.append(_interface(SimInterface("LOCAL", None, name, None, None, None, None), noise))
    parts.append("        </list>\n      </networkInterface>\n")
    return "".join(parts)


def _source_info(a: SimAsset, c: SimCloudSource, noise: str | None, d: _DateFmt) -> str:
    h = _mix(a.id)
    mac = _mac_style(c.mac, c.provider == "AZURE", c.provider == "AZURE") if c.mac else noise
    mac_el = "" if mac is None else f"            <macAddress>{escape(mac)}</macAddress>\n"
    priv = f"            <privateIpAddress>{c.private_ip}</privateIpAddress>\n" if c.private_ip else ""
    pub = f"            <publicIpAddress>{c.public_ip}</publicIpAddress>\n" if c.public_ip else ""
    head = f"            <assetId>{a.id}</assetId>\n"
    times = (
        f"            <firstDiscovered>{d(a.created)}</firstDiscovered>\n"
        f"            <lastUpdated>{d(a.modified)}</lastUpdated>\n"
    )
    if c.provider == "EC2":
        kv = [("Name", a.name), ("Environment", "prod & shared")][: 1 + h % 2]
        tags = "".join(
            f"                  <EC2Tags>\n                    <key>{escape(k)}</key>\n"
            f"                    <value>{escape(v)}</value>\n                  </EC2Tags>\n"
            for k, v in kv
        )
        body = (
            f"          <Ec2AssetSourceSimple>\n{head}            <type>EC_2</type>\n{times}"
            "            <ec2InstanceTags>\n              <tags>\n                <list>\n"
            f"{tags}                </list>\n              </tags>\n            </ec2InstanceTags>\n"
            f"            <reservationId>r-{h:017x}</reservationId>\n"
            f"            <availabilityZone>{c.region}a</availabilityZone>\n"
            f"            <instanceId>{c.instance_id}</instanceId>\n"
            "            <instanceType>t3.medium</instanceType>\n"
            f"            <instanceState>{'STOPPED' if h % 7 == 0 else 'RUNNING'}</instanceState>\n"
            f"            <accountId>{564077667165 + h % 5}</accountId>\n            <vpcId>vpc-{h:08x}</vpcId>\n"
            f"            <region>{c.region}</region>\n            <zone>VPC</zone>\n"
            f"{pub}{priv}{mac_el}            <monitoringEnabled>false</monitoringEnabled>\n"
            "          </Ec2AssetSourceSimple>\n"
        )
    elif c.provider == "AZURE":
        body = (
            f"          <AzureAssetSourceSimple>\n{head}            <type>AZURE</type>\n{times}"
            "            <azureVmTags>\n              <tags>\n                <list>\n"
            "                  <AzureTags>\n                    <key>Owner</key>\n"
            f"                    <value>Team {h % 9} &amp; Co</value>\n                  </AzureTags>\n"
            "                </list>\n              </tags>\n            </azureVmTags>\n"
            f"            <name>{escape(a.name)}</name>\n            <location>{c.region}</location>\n"
            f"            <vmSize>Standard_B2s</vmSize>\n            <vmId>{c.instance_id}</vmId>\n"
            "            <state>SUCCEEDED</state>\n"
            f"            <subscriptionId>{_guid(h + 1)}</subscriptionId>\n"
            f"            <resourceGroupName>rg-{h % 50}</resourceGroupName>\n{mac_el}{priv}{pub}"
            "          </AzureAssetSourceSimple>\n"
        )
    else:
        body = (
            f"          <GcpAssetSourceSimple>\n{head}            <type>GCP</type>\n{times}"
            f"            <instanceId>{c.instance_id}</instanceId>\n"
            f"            <hostname>{escape(a.dns_host_name or a.name)}</hostname>\n"
            f"            <machineType>n1-standard-1</machineType>\n            <zone>{c.region}</zone>\n"
            f"            <state>RUNNING</state>\n            <network>default</network>\n{mac_el}{pub}{priv}"
            "          </GcpAssetSourceSimple>\n"
        )
    asset_source = "          <AssetSource/>\n" if a.kind == "agent" or c.provider == "GCP" else ""
    return f"      <sourceInfo>\n        <list>\n{body}{asset_source}        </list>\n      </sourceInfo>\n"


# --------------------------------------------------------------------------- tags, errors, version


def render_tag_page(tags: Iterable[SimTag], fields: FieldTree | None = None) -> bytes:
    """``/search/am/tag`` records; ``criticalityScore`` only for tags that carry one; ``fields`` as for hostassets."""
    records = list(tags)
    if not records:
        return (_qps_open("2.0/am/tag.xsd") + _SUCCESS_EMPTY).encode()
    parts = [
        _qps_open("2.0/am/tag.xsd"),
        f"  <responseCode>SUCCESS</responseCode>\n  <count>{len(records)}</count>\n",
        "  <hasMoreRecords>false</hasMoreRecords>\n  <data>\n",
    ]
    for t in records:
        h = _mix(t.id)
        stamp = f"20{18 + h % 5}-0{1 + h % 9}-1{h % 10}T0{h % 10}:1{h % 10}:2{h % 10}Z"
        crit = f"      <criticalityScore>{t.criticality}</criticalityScore>\n" if t.criticality is not None else ""
        tag = (
            f"    <Tag>\n      <id>{t.id}</id>\n      <name>{escape(t.name)}</name>\n"
            f"      <created>{stamp}</created>\n      <modified>{stamp}</modified>\n"
            f"      <color>#{h & 0xFFFFFF:06X}</color>\n      <ruleType>STATIC</ruleType>\n{crit}    </Tag>\n"
        )
        parts.append(tag if fields is None else limited(tag, fields, level=2))
    parts.append("  </data>\n</ServiceResponse>")
    return "".join(parts).encode()


def render_qps_error(response_code: str, message: str, resolution: str) -> bytes:
    """A QPS error ``ServiceResponse`` (Qualys sends these with HTTP 200, except our 401)."""
    return (
        _qps_open("2.0/am/hostasset.xsd")
        + f"  <responseCode>{escape(response_code)}</responseCode>\n  <responseErrorDetails>\n"
        + f"    <errorMessage>{escape(message)}</errorMessage>\n"
        + f"    <errorResolution>{escape(resolution)}</errorResolution>\n  </responseErrorDetails>\n</ServiceResponse>"
    ).encode()


def render_portal_version() -> bytes:
    """``GET /qps/rest/portal/version``: a trimmed copy of the real shape."""
    return (
        _qps_open("version.xsd")
        + "  <responseCode>SUCCESS</responseCode>\n  <count>1</count>\n  <data>\n    <Portal-Version>\n"
        + "      <PortalApplication-VERSION>3.11.0.0-3 SIMULATOR</PortalApplication-VERSION>\n"
        + "      <QWEB__VM-VERSION>2.11.0</QWEB__VM-VERSION>\n      <CA-VERSION>3.11.0.0</CA-VERSION>\n"
        + "    </Portal-Version>\n    <QWeb-Version>\n      <WEB-VERSION>10.18.2.0-2</WEB-VERSION>\n"
        + "      <SCANNER-VERSION>12.10.24-1</SCANNER-VERSION>\n    </QWeb-Version>\n  </data>\n</ServiceResponse>"
    ).encode()


def render_simple_return(
    code: int | None,
    text: str,
    items: dict[str, str] | None,
    *,
    now: datetime | None = None,
    declaration: bool = True,
) -> bytes:
    """A ``SIMPLE_RETURN``. Real 400s come without the XML declaration, 401s with it: both are modelled."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n' if declaration else "",
        f'<!DOCTYPE SIMPLE_RETURN SYSTEM "{_HOST}/api/2.0/simple_return.dtd">\n<SIMPLE_RETURN>\n  <RESPONSE>\n',
        f"    <DATETIME>{iso(now or datetime.now(UTC))}</DATETIME>\n",
        f"    <CODE>{code}</CODE>\n" if code is not None else "",
        f"    <TEXT>{escape(text)}</TEXT>\n",
    ]
    if items:
        parts.append("    <ITEM_LIST>\n")
        for key, value in items.items():
            parts.append(
                f"      <ITEM>\n        <KEY>{escape(key)}</KEY>\n"
                f"        <VALUE>{escape(value)}</VALUE>\n      </ITEM>\n"
            )
        parts.append("    </ITEM_LIST>\n")
    parts.append("  </RESPONSE>\n</SIMPLE_RETURN>\n")
    return "".join(parts).encode()


NOT_FOUND_HTML = (
    b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found</title>\n'
    b"</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n"
)


def render_html_error(status: int, reason: str) -> bytes:
    """A plain web-server error page (what a proxy or Apache sends for 403/429/5xx)."""
    return (
        f'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>{status} {reason}</title>\n'
        f"</head><body>\n<h1>{reason}</h1>\n</body></html>\n"
    ).encode()


# --------------------------------------------------------------------------- KnowledgeBase


def render_kb(vulns: Iterable[SimVuln], *, keepalive_prefix: bool, now: datetime | None = None) -> bytes:
    """A ``KNOWLEDGE_BASE_VULN_LIST_OUTPUT``; no ``VULN_LIST`` at all when nothing matched (as observed)."""
    stamp = now or datetime.now(UTC)
    records = list(vulns)
    parts = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n',
        _KB_DOCTYPE,
        _EVAL_COMMENT,
        f"<KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n  <RESPONSE>\n    <DATETIME>{iso(stamp)}</DATETIME>\n",
    ]
    if records:
        parts.append("<VULN_LIST>\n")
        parts.extend(_vuln(v) for v in records)
        parts.append("</VULN_LIST>\n")
    parts.append("  </RESPONSE>\n</KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n")
    parts.append(_EVAL_COMMENT + _CONFIDENTIAL.format(year=stamp.year))
    parts.append("<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n")
    body = "".join(parts).encode()
    return KEEPALIVE_PREFIX + body if keepalive_prefix else body


def _rendered_cves(v: SimVuln) -> list[str]:
    """The CVE ids as sent: sometimes one lower-cased, sometimes the first repeated at the end."""
    h = _mix(v.qid)
    out = list(v.cve_ids)
    if out and h % 5 == 1:
        out[-1] = out[-1].lower()
    if len(out) >= 2 and h % 7 == 0:
        out.append(out[0] if h % 2 else out[0].lower())
    return out


def _category(v: SimVuln) -> str:
    if v.vuln_type == "Information Gathered":
        return "Information gathering"
    return ("Local", "Windows", "Web server", "Ubuntu", "RedHat", "General remote services")[v.qid % 6]


_CONSEQUENCE_SOLUTION = (
    "    <CONSEQUENCE><![CDATA[Successful exploitation allows an attacker to compromise the <B>host</B>.]]>"
    "</CONSEQUENCE>\n"
    '    <SOLUTION><![CDATA[Customers are advised to apply the <A HREF="https://example.com/patch" TARGET="_blank">'
    "vendor patch</A>.]]></SOLUTION>\n"
)


def _vuln(v: SimVuln) -> str:
    h = _mix(v.qid)
    p = [
        f"  <VULN>\n    <QID>{v.qid}</QID>\n    <VULN_TYPE>{v.vuln_type}</VULN_TYPE>\n",
        f"    <SEVERITY_LEVEL>{v.severity}</SEVERITY_LEVEL>\n    <TITLE>{_cdata(v.title)}</TITLE>\n",
        f"    <CATEGORY>{_category(v)}</CATEGORY>\n",
        f"    <LAST_SERVICE_MODIFICATION_DATETIME>{iso(v.last_modified)}</LAST_SERVICE_MODIFICATION_DATETIME>\n",
        f"    <PUBLISHED_DATETIME>{iso(v.published)}</PUBLISHED_DATETIME>\n",
    ]
    if h % 4 == 0:
        p.append(
            f"    <BUGTRAQ_LIST>\n      <BUGTRAQ>\n        <ID>{_cdata(str(10000 + h % 90000))}</ID>\n"
            f"        <URL>{_cdata(f'http://www.securityfocus.com/bid/{10000 + h % 90000}')}</URL>\n"
            "      </BUGTRAQ>\n    </BUGTRAQ_LIST>\n"
        )
    p.append(f"    <PATCHABLE>{1 if v.cve_ids else 0}</PATCHABLE>\n")
    if v.cve_ids and h % 3 == 0:
        # Vendor references may also be CVE-shaped (Microsoft); only CVE_LIST counts.
        p.append(
            f"    <VENDOR_REFERENCE_LIST>\n      <VENDOR_REFERENCE>\n        <ID>{_cdata(v.cve_ids[0])}</ID>\n"
            f"        <URL>{_cdata('https://msrc.microsoft.com/update-guide/vulnerability/' + v.cve_ids[0])}</URL>\n"
            "      </VENDOR_REFERENCE>\n    </VENDOR_REFERENCE_LIST>\n"
        )
    cves = _rendered_cves(v)
    if cves:
        p.append("    <CVE_LIST>\n")
        for n, cve in enumerate(cves):
            url = (
                ""
                if (h + n) % 11 == 3
                else f"        <URL>{_cdata('http://cve.mitre.org/cgi-bin/cvename.cgi?name=' + cve)}</URL>\n"
            )
            p.append(f"      <CVE>\n        <ID>{_cdata(cve)}</ID>\n{url}      </CVE>\n")
        p.append("    </CVE_LIST>\n")
    diagnosis = _cdata(
        f"{v.title} was detected on the host.<P>Affected Versions:<BR>See vendor advisory &amp; notes.<P>"
    )
    p.append(f"    <DIAGNOSIS>{diagnosis}</DIAGNOSIS>\n{_CONSEQUENCE_SOLUTION}")
    if v.cvss_base is not None:
        src = ' source="service"' if h % 2 else ""
        p.append(
            f"    <CVSS>\n      <BASE{src}>{v.cvss_base:g}</BASE>\n"
            f"      <TEMPORAL>{round(v.cvss_base * 0.83, 1):g}</TEMPORAL>\n"
            "      <VECTOR_STRING>CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P/E:U/RL:OF/RC:C</VECTOR_STRING>\n"
            "      <ACCESS>\n        <VECTOR>3</VECTOR>\n        <COMPLEXITY>1</COMPLEXITY>\n      </ACCESS>\n"
            "      <IMPACT>\n        <CONFIDENTIALITY>2</CONFIDENTIALITY>\n        <INTEGRITY>2</INTEGRITY>\n"
            "        <AVAILABILITY>2</AVAILABILITY>\n      </IMPACT>\n      <AUTHENTICATION>1</AUTHENTICATION>\n"
            "      <EXPLOITABILITY>1</EXPLOITABILITY>\n      <REMEDIATION_LEVEL>1</REMEDIATION_LEVEL>\n"
            "      <REPORT_CONFIDENCE>3</REPORT_CONFIDENCE>\n    </CVSS>\n"
        )
    if v.cvss_v3_base is not None:
        p.append(
            f"    <CVSS_V3>\n      <BASE>{v.cvss_v3_base:g}</BASE>\n"
            f"      <TEMPORAL>{round(v.cvss_v3_base * 0.9, 1):g}</TEMPORAL>\n"
            "      <VECTOR_STRING>CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C</VECTOR_STRING>\n"
            "      <CVSS3_VERSION>3.1</CVSS3_VERSION>\n"
            "      <ATTACK>\n        <VECTOR>1</VECTOR>\n        <COMPLEXITY>1</COMPLEXITY>\n      </ATTACK>\n"
            "      <IMPACT>\n        <CONFIDENTIALITY>3</CONFIDENTIALITY>\n        <INTEGRITY>3</INTEGRITY>\n"
            "        <AVAILABILITY>3</AVAILABILITY>\n      </IMPACT>\n"
            "      <PRIVILEGES_REQUIRED>1</PRIVILEGES_REQUIRED>\n      <USER_INTERACTION>1</USER_INTERACTION>\n"
            "      <SCOPE>1</SCOPE>\n    </CVSS_V3>\n"
        )
    p.append(f"    <PCI_FLAG>{1 if v.severity >= 4 else 0}</PCI_FLAG>\n")
    if v.cve_ids and h % 2:
        p.append(
            '    <THREAT_INTELLIGENCE>\n      <THREAT_INTEL id="5"><![CDATA[Easy_Exploit]]></THREAT_INTEL>\n'
            "    </THREAT_INTELLIGENCE>\n"
        )
    auth = "" if h % 3 else "      <AUTH_TYPE_LIST>\n        <AUTH_TYPE>Unix</AUTH_TYPE>\n      </AUTH_TYPE_LIST>\n"
    p.append(f"    <DISCOVERY>\n      <REMOTE>{h % 2}</REMOTE>\n{auth}    </DISCOVERY>\n  </VULN>\n")
    return "".join(p)
