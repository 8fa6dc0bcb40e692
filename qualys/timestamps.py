"""Qualys timestamps: parsed to aware datetimes, written as ``YYYY-MM-DDTHH:MM:SSZ``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ISO_Z = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ\Z")


def parse_datetime(raw: str | None) -> datetime | None:
    """Parse a Qualys timestamp (``2020-04-22T22:13:06Z``, with or without fraction/offset)."""
    if not raw:
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(raw: str | datetime | None) -> str | None:
    """``YYYY-MM-DDTHH:MM:SSZ``; Qualys's own form passes straight through (it is most of a sync's dates)."""
    if isinstance(raw, str) and _ISO_Z.match(raw):
        return raw
    value = raw if isinstance(raw, datetime) else parse_datetime(raw)
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
