"""Log lines are one JSON object per line whatever the input, with ids redacted (SPEC 11.7)."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from chat_app.log_format import APP_LOGGER, JsonLineFormatter, configure_logging
from chat_app.services.audit import keyed_ref

SECRET = b"test-secret-key"
NASTY_INPUTS = [
    "line one\r\nFAKE {\"level\": \"ERROR\"}",  # CR/LF: a forged second line
    "\x1b[31mred\x1b[0m and \x1b]0;title\x07",  # ANSI colours and a terminal title
    "Mozilla/5.0 \u202egnp.exe\u202c \u2066isolate\u2069",  # bidi overrides (user agents)
    "nul\x00 bell\x07 backspace\x08 tab\t vt\x0b ff\x0c del\x7f",
    "report\u2028next\u2029para \x85nel",  # Unicode line/paragraph separators, NEL
    "emoji 🧪 and combining e\u0301",
    "\ud800 lone surrogate",  # not even valid UTF-8
]


def formatter() -> JsonLineFormatter:
    return JsonLineFormatter(lambda value: keyed_ref(SECRET, value))


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("chat_app.test", logging.WARNING, __file__, 1, message, args,
                             exc_info)  # type: ignore[arg-type]


@pytest.mark.parametrize("nasty", NASTY_INPUTS)
def test_any_input_gives_one_printable_ascii_json_line(nasty: str) -> None:
    line = formatter().format(record("upload of %s refused", nasty))
    assert "\n" not in line and "\r" not in line
    assert line.isascii() and line.isprintable()  # no control, bidi or separator survives
    assert json.loads(line)["message"] == f"upload of {nasty} refused"  # nothing is lost


def test_session_ids_become_their_audit_reference() -> None:
    session_id = str(uuid.uuid4())
    key = f"sessions/{session_id}/{uuid.uuid4()}"
    line = formatter().format(record("S3 refused %s (%s)", key, session_id.upper()))
    assert session_id not in line.lower()
    assert f"id:{keyed_ref(SECRET, session_id)}" in json.loads(line)["message"]
    assert json.loads(line)["message"].count("id:") == 3  # both ids of the key, and the upper


def test_tracebacks_stay_on_the_line_and_are_redacted() -> None:
    session_id = str(uuid.uuid4())
    try:
        raise ValueError(f"no session {session_id}\nsecond line")
    except ValueError:
        import sys

        line = formatter().format(record("request failed", exc_info=sys.exc_info()))
    entry = json.loads(line)
    assert "\n" not in line and session_id not in line
    assert "ValueError" in entry["exception"] and "Traceback" in entry["exception"]


def test_request_ids_stay_readable() -> None:
    request_id = uuid.uuid4().hex  # 32 plain hex digits, the form the API middleware issues
    entry = json.loads(formatter().format(record("request %s failed", request_id)))
    assert entry["message"] == f"request {request_id} failed"
    assert set(entry) == {"at", "level", "logger", "message"}
    assert (entry["level"], entry["logger"]) == ("WARNING", "chat_app.test")


def test_configure_logging_is_idempotent_and_owns_the_app_loggers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger(APP_LOGGER)
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(lambda value: keyed_ref(SECRET, value))
    configure_logging(lambda value: keyed_ref(SECRET, value))
    assert len(logger.handlers) == 1 and logger.propagate is False
    logging.getLogger("chat_app.services.example").info("sweep: %s", "a\nb")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["message"] == "sweep: a\nb"
