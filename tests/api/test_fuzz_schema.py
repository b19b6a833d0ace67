"""Schema-driven fuzzing: schemathesis against /api/v1/openapi.json, in process (SPEC 8, 11.6).

Every operation gets positive and negative cases (`mode: all`) from every phase (examples,
coverage, fuzzing); a state machine then follows the document's OpenAPI links, so sessions that
POST /session issues flow into the other calls and uploaded files into download and delete. The
checks: no 5xx; every status, content type and header declared; every body (and streamed event)
matching its schema; negative input refused; schema-valid input accepted, up to the rules a schema
cannot state (CONTENT_RULES below).

`make test` runs a small budget with a fixed seed (the same cases on every run and machine, so
CI cannot flake); `make fuzz` raises the budget and draws a new seed, through the environment:
CHAT_APP_FUZZ_EXAMPLES (generated cases per operation), CHAT_APP_FUZZ_SCENARIOS (state-machine
scenarios) and CHAT_APP_FUZZ_SEED (printed in the summary, to replay a run).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.core.file_samples import FILE_SAMPLES

from chat_app.api import create_api
from chat_app.api.deps import SESSION_ID_HEADER
from chat_app.container import Services
from chat_app.services.session_ids import is_session_id
from tests.api.support import Api

MAX_EXAMPLES = int(os.environ.get("CHAT_APP_FUZZ_EXAMPLES", "8"))
SCENARIOS = int(os.environ.get("CHAT_APP_FUZZ_SCENARIOS", "8"))
SEED = int(os.environ.get("CHAT_APP_FUZZ_SEED", "20260101"))
#: Calls per scenario: room for create -> upload -> download -> reset -> a call on the ended id.
STEPS_PER_SCENARIO = 12
ADMIN_TOKEN = "fuzz-admin-token"
UPLOAD = ("POST", "/api/v1/session/files")
SEND = ("POST", "/api/v1/session/messages")
EVENT_STREAM = "text/event-stream"
#: A valid id the hooks below put in place of a generated one; each call swaps in a fresh session.
LIVE_SESSION = "00000000-0000-4000-8000-000000000000"
#: Uploads the app accepts (their format shows in the name schemathesis gives the part), and a
#: PDF signature before arbitrary bytes, so the extractor meets broken PDFs.
ACCEPTED_SAMPLES = [FILE_SAMPLES[ext] for ext in ("png", "jpg", "gif", "webp", "pdf")]
PDF_SIGNATURE = b"%PDF-"
#: What a schema-valid request may get: the check's default minus 5xx (never acceptable), plus,
#: per operation below, where a rule is about content rather than shape: uploads are judged by
#: extension and sniffed bytes (413/415) and one file per request (422); a message must keep a
#: visible character once control characters are dropped (422).
CONTENT_RULES = ["2xx", "3xx", "401", "403", "404", "409", "429"]
ON = {"enabled": True}

CONFIG = schemathesis.Config.from_dict({
    # An explicit seed makes every operation's cases a function of it (schemathesis derives one
    # seed per operation); no example database, so nothing from earlier runs leaks in.
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "auth": {"openapi": {"AdminToken": {"bearer": ADMIN_TOKEN}}},
    "checks": {
        "enabled": False,
        "not_a_server_error": ON,
        "status_code_conformance": ON,
        "content_type_conformance": ON,
        "response_schema_conformance": ON,
        "response_headers_conformance": ON,
        "negative_data_rejection": ON,
        "positive_data_acceptance": ON,
        "missing_required_header": ON,
    },
    "operations": [
        {
            "include-method": "POST",
            "include-path": "/api/v1/session/files",
            "checks": {"positive_data_acceptance": {
                "expected-statuses": [*CONTENT_RULES, "413", "415", "422"]
            }},
        },
        {
            "include-method": "POST",
            "include-path": "/api/v1/session/messages",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*CONTENT_RULES, "422"]}},
        },
    ],
})


def _document_only() -> Services:
    raise AssertionError("this app serves its OpenAPI document only; cases go to `fuzz_api`")


# Loaded at import, as schemathesis' pytest integration wants; the document needs no services.
# (`schemathesis.pytest.from_fixture` would load it from a fixture, but breaks on pytest 9: it
# sets `Node._nodeid`, which pytest no longer has.)
schema = schemathesis.openapi.from_dict(create_api(_document_only).openapi(), config=CONFIG)


@schema.hook
def flatmap_headers(
    context: schemathesis.HookContext, headers: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Most well-formed session ids become a live session: random ids only ever meet a 404.

    Sending a message also asks for the streamed reply half of the time.
    """
    operation = context.operation
    if (operation is not None and (operation.method.upper(), operation.path) == SEND
            and headers is not None):
        # The reply streams as server-sent events when asked to; schemathesis never asks.
        streamed = st.sampled_from([{}, {"Accept": EVENT_STREAM}])
        headers_strategy = streamed.map(lambda accept: {**headers, **accept})
    else:
        headers_strategy = st.just(headers)
    if not headers or not is_session_id(headers.get(SESSION_ID_HEADER)):
        return headers_strategy  # missing or malformed on purpose: a negative case, keep it
    return st.tuples(headers_strategy, st.integers(0, 3)).map(
        lambda drawn: {**drawn[0], SESSION_ID_HEADER: LIVE_SESSION} if drawn[1] else drawn[0]
    )


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Upload files the app accepts, or a broken PDF, as well as the generated content.

    The part's name is `file` plus the extension of the format its bytes start with, so only
    formats with a signature can pass the extension check (tests/api/test_files.py covers text).
    """
    operation = context.operation
    if (operation is None or (operation.method.upper(), operation.path) != UPLOAD
            or not isinstance(body, dict) or not isinstance(body.get("file"), str | bytes)):
        return st.just(body)
    accepted = st.sampled_from(ACCEPTED_SAMPLES)
    broken_pdf = st.binary(max_size=64).map(lambda tail: PDF_SIGNATURE + tail)
    return st.one_of(st.just(body["file"]), accepted, broken_pdf).map(
        lambda data: {**body, "file": data}
    )


class Tally:
    """Answers per operation: the run's figures, and proof that its cases reached the app."""

    def __init__(self) -> None:
        # (operation, answer): "404", or "200 text/event-stream" for a success that is not JSON.
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.started = time.monotonic()

    def note(self, case: schemathesis.Case, response: schemathesis.Response) -> None:
        """Count one response."""
        answer = str(response.status_code)
        media_type = (response.headers.get("content-type") or [""])[0].split(";")[0]
        if response.status_code < 400 and media_type not in ("", "application/json"):
            answer += f" {media_type}"
        self.counts[(case.operation.label, answer)] += 1

    def successes(self) -> set[str]:
        """The operations that answered with a 2xx or 3xx at least once."""
        return {label for label, answer in self.counts if answer[0] in "23"}

    def summary(self) -> str:
        """`N cases in S s` and the answers per operation."""
        lines = [f"fuzz: {sum(self.counts.values())} cases in "
                 f"{time.monotonic() - self.started:.1f} s (CHAT_APP_FUZZ_SEED={SEED})"]
        for label in sorted({label for label, _ in self.counts}):
            answers = {answer: n for (seen, answer), n in sorted(self.counts.items())
                       if seen == label}
            lines.append(f"  {label}: {answers}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def tally(request) -> Iterator[Tally]:
    """One tally for the module; its summary is printed after the module's last test."""
    counts = Tally()
    yield counts
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line("\n" + counts.summary())


@pytest.fixture
def fuzz_api(make_api) -> Api:
    """The app under test: high rate limits (429 would drown every other answer), admin on."""
    return make_api(CHAT_APP_ADMIN_TOKEN=ADMIN_TOKEN)


def call_kwargs(case: schemathesis.Case, api: Api) -> dict[str, Any]:
    """How to send a case to `api`, after swapping the placeholder id for a session made now.

    A fresh session per case, because an earlier case may have reset or expired any other.
    """
    headers = case.headers or {}
    if headers.get(SESSION_ID_HEADER) == LIVE_SESSION:
        headers[SESSION_ID_HEADER] = api.new_session()
    kwargs: dict[str, Any] = {"app": api.client.app}
    if "Accept" in headers:
        # Schemathesis' in-process client sends its own `Accept: */*` over the case's header;
        # headers passed to the call win.
        kwargs["headers"] = {"Accept": headers["Accept"]}
    return kwargs


@schema.parametrize()
# One app per operation, shared by its cases, is the point: they build on each other's rows.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_operation_conforms_to_schema(case: schemathesis.Case, fuzz_api: Api, tally: Tally):
    response = case.call_and_validate(**call_kwargs(case, fuzz_api))
    tally.note(case, response)


def test_linked_calls_conform_to_schema(fuzz_api: Api, tally: Tally):
    stateful = Tally()

    class LinkedCalls(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return call_kwargs(case, fuzz_api)

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            tally.note(case, response)
            stateful.note(case, response)

    hypothesis.seed(SEED)(LinkedCalls)
    LinkedCalls.run(settings=hypothesis.settings(
        max_examples=SCENARIOS,
        stateful_step_count=STEPS_PER_SCENARIO,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    ))

    # The run is only worth something if links carried real ids: sessions were created, then
    # used successfully by the operations they link to, uploads among them.
    used = stateful.successes()
    assert {"POST /api/v1/session", "GET /api/v1/session/messages",
            "POST /api/v1/session/files"} <= used, stateful.summary()
