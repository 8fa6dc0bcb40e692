"""A Qualys API simulator for tests and benchmarks: real HTTP on loopback, real Qualys XML.

* :mod:`.estate` - the deterministic data model (assets, tags, KnowledgeBase);
* :mod:`.render` - the XML bodies in the shapes of real qg3 responses;
* :mod:`.server` - the HTTP server with Qualys' limits and injectable faults;
* :mod:`.truth` - the device/finding records a correct sync must produce.

Test-only: nothing in the connector imports this package.
"""

from .estate import Estate, SimAsset, SimCloudSource, SimFinding, SimInterface, SimTag, SimVuln
from .server import Fault, Latency, QualysSimulator, RequestRecord
from .truth import expected_device, expected_findings, expected_run

__all__ = [
    "Estate",
    "Fault",
    "Latency",
    "QualysSimulator",
    "RequestRecord",
    "SimAsset",
    "SimCloudSource",
    "SimFinding",
    "SimInterface",
    "SimTag",
    "SimVuln",
    "expected_device",
    "expected_findings",
    "expected_run",
]
