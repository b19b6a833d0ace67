"""SPEC 11.7 over the whole test run: no raw session id in any log line or audit row.

`LeakWatch` records every session id the services issue in this process, every audit row they
write and every log record at INFO or above (the raw message, before any redaction, so a call
that logs an id is caught even though the JSON formatter would hide it). Served apps (the
browser and scale-out suites) are scanned when they stop: their own database's session ids
against their log file and their audit rows. The run fails at the end if anything leaked.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UUID_IN_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def ids_in(text: str, ids: set[str]) -> set[str]:
    """The members of `ids` that appear in `text` (any case)."""
    return {found.lower() for found in UUID_IN_TEXT.findall(text)} & ids


@dataclass
class LeakWatch:
    """What one test run issued, wrote and logged, and what leaked."""

    issued: set[str] = field(default_factory=set)
    audit_rows: list[str] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    served_apps_scanned: int = 0
    findings: list[str] = field(default_factory=list)

    def note_audit_row(self, row: Any) -> None:
        self.audit_rows.append(json.dumps({
            "event": row.event, "session_ref": row.session_ref, "actor": row.actor,
            "ip_hash": row.ip_hash, "request_id": row.request_id, "details": row.details,
        }, default=str))

    def leaks(self) -> list[str]:
        """Every in-process leak, plus what the served-app scans found."""
        found = list(self.findings)
        for where, texts in (("audit row", self.audit_rows), ("log line", self.log_lines)):
            for text in texts:
                if hits := ids_in(text, self.issued):
                    found.append(f"{where} holds {len(hits)} raw session id(s): {text[:300]}")
        return found

    def scan_served_app(self, data_dir: Path, log_path: Path) -> None:
        """After a served app stopped: its sessions' ids against its log and audit rows."""
        database = data_dir / "chat_app.db"
        if not database.exists():
            return  # served on PostgreSQL (scale-out): its cluster fixture owns that database
        try:
            with sqlite3.connect(database) as conn:
                ids = {row[0].lower() for row in conn.execute("SELECT uuid FROM user_sessions")}
                rows = [json.dumps(row, default=str) for row in conn.execute(
                    "SELECT event, session_ref, actor, ip_hash, request_id, details "
                    "FROM audit_log"
                )]
        except sqlite3.Error as exc:
            self.findings.append(f"{database}: could not be scanned ({exc})")
            return
        self.served_apps_scanned += 1
        for row in rows:
            if hits := ids_in(row, ids):
                self.findings.append(f"{data_dir}: audit row holds {len(hits)} raw id(s): {row}")
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                if hits := ids_in(line, ids):
                    self.findings.append(
                        f"{log_path}: log line holds {len(hits)} raw id(s): {line[:300]}"
                    )


class RecordingHandler(logging.Handler):
    """Keeps the raw text of every record it sees (message and traceback)."""

    def __init__(self, watch: LeakWatch) -> None:
        super().__init__(logging.INFO)
        self._watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self._watch.log_lines.append(text)


#: The run's watch: the session fixture in tests/conftest.py fills it; served apps report to it.
WATCH = LeakWatch()
