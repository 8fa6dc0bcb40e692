"""The timer-triggered sync: vault credentials + settings -> the same sync the CLI runs."""

from __future__ import annotations

import json
import logging

from qualys.config.settings import SettingsReader, load_sync_settings
from qualys.hosting.credentials import SecretClientFactory, load_credentials
from qualys.output.sink import Sink
from qualys.sync.run import SyncResult, run_sync

log = logging.getLogger("qualys.sync.run")

#: Application Insights: traces | where message startswith "qualys_sync summary" | extend s = parse_json(substring(message, 20))
SUMMARY_PREFIX = "qualys_sync summary "


def run_scheduled_sync(
    reader: SettingsReader | None = None,
    *,
    secret_client: SecretClientFactory | None = None,
    sink: Sink | None = None,
    past_due: bool = False,
) -> SyncResult:
    """Read credentials once for this run (rotations apply on the next run), sync, log one summary line."""
    settings_reader = reader or SettingsReader()
    credentials = load_credentials(settings_reader, secret_client)
    settings = load_sync_settings(
        settings_reader,
        api_url=credentials.api_url,
        username=credentials.username,
        password=credentials.password,
    )
    if past_due:
        log.warning("timer is past due: a previous run may have overrun; this run resumes from the checkpoint")
    result = run_sync(settings, sink=sink)
    log.info("%s%s", SUMMARY_PREFIX, json.dumps({**result.summary(), "credentials": credentials.source}))
    return result
