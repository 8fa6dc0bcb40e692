"""Anonymous local temporary files for what a run builds before it writes it out.

When the temporary folder cannot take a file (read-only, full, missing), the spool is kept in
memory instead and the run goes on: it needs more memory, and says so once.
"""

from __future__ import annotations

import io
import logging
import tempfile
from typing import IO

log = logging.getLogger(__name__)

_warned = False


def local_spool(prefix: str, buffering: int = 1 << 18) -> IO[bytes]:
    """An unnamed temporary file (gone when closed, or when the process ends)."""
    global _warned
    try:
        return tempfile.TemporaryFile(prefix=prefix, buffering=buffering)
    except OSError as exc:
        if not _warned:
            log.warning("cannot create files in the temporary folder (%s); building the state in memory", exc.strerror)
            _warned = True
        return io.BytesIO()
