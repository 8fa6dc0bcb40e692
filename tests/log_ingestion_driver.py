"""``python -m tests.log_ingestion_driver``: one sync with the Log Analytics destination, as its own process.

What the Function App's timer does, with the stand-in's certificate and token instead of the Azure
identity (which needs Entra ID): the kill test stops this process mid-upload and runs it again.
Prints the sync's summary as JSON on its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from azure.monitor.ingestion import LogsIngestionClient

from qualys.config.secret import Secret
from qualys.config.settings import LocalOutput, LogAnalyticsTarget, SyncSettings
from qualys.output.log_tables import TABLES_BY_KIND
from qualys.sync.run import run_sync
from tests.helpers import PASSWORD, USER
from tests.keyvault_fake import StubCredential
from tests.logs_ingestion_fake import RULE_ID, TOKEN


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--certificate", required=True)
    args = parser.parse_args()
    target = LogAnalyticsTarget(args.endpoint, RULE_ID, {kind: table.stream for kind, table in TABLES_BY_KIND.items()})
    settings = SyncSettings(
        api_url=args.api_url, username=USER, password=Secret(PASSWORD), lookback_days=90, page_size=200,
        max_retry_wait_seconds=60, output=LocalOutput(args.output_dir),
    )
    settings = dataclasses.replace(settings, log_analytics=target)
    client = LogsIngestionClient(args.endpoint, StubCredential(TOKEN), connection_verify=args.certificate)
    result = run_sync(settings, log_uploader=client)
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
