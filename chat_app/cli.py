"""`python -m chat_app ...`: operator tasks. Each command is one service call plus its output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from chat_app.errors import AppError
from chat_app.services.audit import RequestContext
from chat_app.services.sweep import format_report


def _progress(stage: str, count: int) -> None:
    # Progress only on a terminal: pipes and logs get the final report alone.
    if sys.stderr.isatty():
        print(f"\r{stage}: {count:,}        ", end="", file=sys.stderr, flush=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep once and print its report."""
    from chat_app.container import get_services

    services = get_services()
    report = services.sweeper.run(
        RequestContext(actor="cli"), dry_run=args.dry_run,
        progress=None if args.json else _progress,
    )
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    print(json.dumps(report.as_dict()) if args.json else format_report(report))
    return 1 if report.errors else 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m chat_app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="expire sessions, purge their files, delete orphans")
    sweep.add_argument("--dry-run", action="store_true", help="report, change nothing")
    sweep.add_argument("--json", action="store_true", help="print the report as JSON")
    sweep.set_defaults(handler=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors become one line on stderr and a non-zero exit."""
    from chat_app.settings import get_settings_or_exit

    args = build_parser().parse_args(argv)
    get_settings_or_exit()
    try:
        return args.handler(args)
    except AppError as error:
        print(f"chat_app: {error.detail}", file=sys.stderr)
        return 2
