"""The timer-triggered sync: vault credentials + settings -> the same sync the CLI runs.

Every run ends with a log line that Application Insights keeps (``host.json`` excludes traces
from sampling): ``SUMMARY_PREFIX`` and the run's summary as JSON when it completes,
``FAILURE_PREFIX`` and the cause and fix when it does not, and both when the run reached Blob
Storage but Log Analytics refused it (the data is fresh; the destination needs attention). The alert rules in
``infra/app/alerts.bicep`` query these two prefixes (``tests/test_infra.py`` checks they match).
"""

from __future__ import annotations

import json
import logging

from qualys.config.settings import SettingsReader, load_sync_settings
from qualys.errors import ConnectorError
from qualys.hosting.credentials import SecretClientFactory, load_credentials
from qualys.output.sink import Sink
from qualys.sync.run import DeliveryFailedError, SyncResult, run_sync

log = logging.getLogger("qualys.sync.run")

#: Application Insights: traces | where message startswith "qualys_sync summary " | extend s = parse_json(substring(message, 20))
SUMMARY_PREFIX = "qualys_sync summary "
#: Application Insights: traces | where message startswith "qualys_sync failed " (severity Error)
FAILURE_PREFIX = "qualys_sync failed "


def run_scheduled_sync(
    reader: SettingsReader | None = None,
    *,
    secret_client: SecretClientFactory | None = None,
    sink: Sink | None = None,
    past_due: bool = False,
) -> SyncResult:
    """Read credentials once for this run (rotations apply on the next run), sync, log one summary line.

    A run that fails logs one failure line (the cause and the fix) and raises, so the Functions host
    records the invocation as failed too. A run that reached Blob Storage but not Log Analytics logs
    both lines: the data is fresh, and the destination needs attention.
    """
    try:
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
    except DeliveryFailedError as error:  # the run is in Blob Storage: its summary, then the delivery failure
        _log_summary(error.result, credentials.source)
        _log_failure(error)
        raise
    except ConnectorError as error:
        _log_failure(error)
        raise
    except Exception as error:  # a bug: still one line an alert can find; the traceback goes to exceptions
        log.error("%s%s", FAILURE_PREFIX, json.dumps({"error": type(error).__name__, "cause": "unexpected error"}))
        raise
    _log_summary(result, credentials.source)
    return result


def _log_summary(result: SyncResult, credentials_source: str) -> None:
    log.info("%s%s", SUMMARY_PREFIX, json.dumps({**result.summary(), "credentials": credentials_source}))


def _log_failure(error: ConnectorError) -> None:
    failure = {"error": type(error).__name__, "cause": error.cause, "action": error.action}
    log.error("%s%s", FAILURE_PREFIX, json.dumps(failure))
