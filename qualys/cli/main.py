"""``python -m qualys``: sync, demo (against the bundled simulator).

Expected failures print one line (cause and fix) and exit non-zero, without a
traceback. The password is read from the environment or the vault only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from qualys.cli.summary import summary_line
from qualys.config.settings import load_sync_settings
from qualys.errors import ConfigError, ConnectorError
from qualys.sync.run import DeliveryFailedError, Progress, run_sync

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _progress_printer() -> object:
    if not sys.stderr.isatty():
        return None

    def show(progress: Progress) -> None:
        sys.stderr.write(
            f"\rpages {progress.pages:,}  assets {progress.devices:,}  findings {progress.findings:,}   "
        )
        sys.stderr.flush()

    return show


def cmd_sync(args: argparse.Namespace) -> int:
    settings = load_sync_settings(
        api_url=args.api_url, username=args.username, output_dir=args.output_dir, lookback_days=args.lookback_days
    )
    progress = _progress_printer()
    failure: DeliveryFailedError | None = None
    try:
        result = run_sync(settings, full=args.full, progress=progress)  # type: ignore[arg-type]
    except DeliveryFailedError as exc:  # the run is in Blob Storage: say so, then the delivery failure
        failure, result = exc, exc.result
    if progress is not None:
        sys.stderr.write("\n")
    print(json.dumps(result.summary()) if args.json else summary_line(result))
    if failure is not None:
        raise failure
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the configured connection (settings + vault or environment credentials)."""
    from qualys.api.validation import invalid_url_report, validate_connection
    from qualys.config.settings import SettingsReader, asset_partitions
    from qualys.config.urls import normalize_api_url
    from qualys.hosting.credentials import load_credentials

    reader = SettingsReader()
    partitions = asset_partitions(reader)  # an invalid value is a configuration error (exit 2), not a check
    try:
        credentials = load_credentials(reader)
        api_url = normalize_api_url(
            args.api_url or credentials.api_url or reader.require("QUALYS_API_URL", "Set it or pass --api-url.")
        )
        report = validate_connection(
            api_url, args.username or credentials.username, credentials.password, partitions=partitions
        )
    except ConfigError as error:
        report = invalid_url_report(args.api_url, error)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"Qualys connection to {report.api_url or '(no URL)'}: {'OK' if report.ok else 'FAILED'}")
        for check in report.checks:
            status = "ok " if check.ok else "FAIL"
            seen = ", ".join(x for x in (f"HTTP {check.http_status}" if check.http_status else "",
                                         f"code {check.qualys_code}" if check.qualys_code else "") if x)
            print(f"  [{status}] {check.name}" + (f" ({seen})" if seen else ""))
            if not check.ok:
                print(f"         cause:  {check.cause}")
                if check.action:
                    print(f"         action: {check.action}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_demo(args: argparse.Namespace) -> int:
    from qualys.cli.demo import run_demo

    return run_demo(assets=args.assets, output_dir=args.output_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qualys", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    sync = commands.add_parser("sync", help="pull assets modified in the window and their findings")
    sync.add_argument("--api-url", help="Qualys API server (default: QUALYS_API_URL)")
    sync.add_argument("--username", help="Qualys API user (default: QUALYS_USERNAME; the password comes from QUALYS_PASSWORD)")
    sync.add_argument("--output-dir", help="write to this folder (default: OUTPUT_DIR, else Blob Storage)")
    sync.add_argument("--lookback-days", type=int, help="window of a full run in days (default: QUALYS_LOOKBACK_DAYS or 90)")
    sync.add_argument("--full", action="store_true", help="ignore the last run and cover the whole lookback window")
    sync.add_argument("--json", action="store_true", help="print the run summary as JSON")
    sync.set_defaults(handler=cmd_sync)

    validate = commands.add_parser("validate", help="check the connection the way the Qualys troubleshooting guide does")
    validate.add_argument("--api-url", help="Qualys API server (default: vault qualys-api-url, else QUALYS_API_URL)")
    validate.add_argument("--username", help="Qualys API user (default: vault or QUALYS_USERNAME)")
    validate.add_argument("--json", action="store_true", help="print exactly the JSON report on stdout")
    validate.set_defaults(handler=cmd_validate)

    demo = commands.add_parser("demo", help="sync from the bundled Qualys simulator into a local folder")
    demo.add_argument("--assets", type=int, default=300, help="simulated host assets (default 300)")
    demo.add_argument("--output-dir", default="qualys-output", help="output folder (default ./qualys-output)")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="qualys: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        code = args.handler(args)
        return int(code)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: the next run resumes from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
