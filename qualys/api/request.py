"""One Qualys API call as a value: what to send, and the short name it goes by in stats and errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: VM/PC APIs (``/api/2.0/...``, the KnowledgeBase among them) share a per-subscription
#: concurrency limit (``X-Concurrency-Limit-Limit``); QPS (``/qps/rest/...``) has its own rules.
VM_API_PREFIX = "/api/"
QPS_PREFIX = "/qps/"


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A request the client sends (and resends, unchanged, on a retry)."""

    method: str
    path: str
    #: Short name of the API in stats, logs and error messages ("hostasset", "knowledge_base", ...).
    endpoint: str
    data: bytes | Mapping[str, str] | None = None
    content_type: str | None = None

    @classmethod
    def xml(cls, path: str, endpoint: str, body: bytes) -> ApiRequest:
        """A POST of an XML document (the QPS ``ServiceRequest``)."""
        return cls("POST", path, endpoint, body, "text/xml")

    @classmethod
    def form(cls, path: str, endpoint: str, fields: Mapping[str, str]) -> ApiRequest:
        """A POST of form fields (the VM/PC ``/api/2.0/`` APIs)."""
        return cls("POST", path, endpoint, dict(fields))

    @property
    def shares_vm_api_limit(self) -> bool:
        return self.path.startswith(VM_API_PREFIX)

    @property
    def is_qps(self) -> bool:
        """An Asset Management (QPS) call: its answers, errors included, are ``ServiceResponse`` documents."""
        return self.path.startswith(QPS_PREFIX)
