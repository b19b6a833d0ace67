"""Application logs as one JSON object per line, with every UUID replaced by a keyed reference.

Why JSON: a log line must stay one line whatever a client sent (CR/LF, ANSI escapes, bidi
controls in a user agent, a filename or a message); `json.dumps(ensure_ascii=True)` escapes
every control and non-ASCII character, so no input can forge a line or recolour a terminal.

Why redact: SPEC 11.7, no raw session id in logs. Our own messages only log types and request
ids, but a library's message or a traceback can quote an object key
(`sessions/<session uuid>/<file uuid>`) or a value; every UUID-shaped string in the final line
becomes `id:<ref>`, the same HMAC reference the audit log uses, so lines stay correlatable.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime

# Hyphenated only: session and file ids are always written that way, while request ids are
# 32 plain hex digits that must stay readable to correlate a line with a response.
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
#: The loggers our code writes to; third-party loggers keep their own handlers.
APP_LOGGER = "chat_app"


class JsonLineFormatter(logging.Formatter):
    """`{"at", "level", "logger", "message", "exception"?}` on one ASCII line, ids redacted."""

    def __init__(self, reference: Callable[[str], str]) -> None:
        super().__init__()
        self._reference = reference

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=True)

    def redact(self, text: str) -> str:
        """Every UUID in `text` replaced by its keyed reference."""
        return UUID_PATTERN.sub(lambda match: f"id:{self._reference(match.group(0).lower())}",
                                text)


def configure_logging(reference: Callable[[str], str], *, level: int = logging.INFO) -> None:
    """Send the `chat_app` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger(APP_LOGGER)
    logger.setLevel(level)
    for handler in logger.handlers:
        if isinstance(handler.formatter, JsonLineFormatter):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter(reference))
    logger.addHandler(handler)
    # Our lines are complete: the root handler (granian's, Reflex's) would print them again.
    logger.propagate = False
