"""Stateful model check of the services (issue 6): random request sequences against a model.

A Hypothesis state machine drives the real services (sessions, files, uploads, chat, the sweep)
on a real database and a real object store, as a few clients would: page loads, API sessions,
resumes, resets, uploads (accepted and refused), deletes, messages to the offline assistant,
a clock moved past the idle and absolute lifetimes, sweeps (and dry runs), objects left behind
by crashes, tampered stored ids, and concurrent pairs where requests really do race (resets of
one session, a reset against an upload, a message or a delete, two uploads for the last slot, two
deletes of one file, two sweeps, a sweep against a reset). tests/services/session_model.py
predicts every answer and every audit row; after each step the database and the store are read
directly and SPEC section 11 is checked:

1. an ended or expired id never validates again: each one is tried right after it ends, and
   clients keep using stale ids through every path;
2. every `stored` row has its object, and the store holds exactly the objects the model expects;
3. right after a sweep, no object older than the grace period is left without a live owner;
4. the audit log only grows, each step wrote exactly the rows it should, and every state change
   has its row (one `session.created` per session, one `session.reset`/`session.expired` per
   ended one, each stored file one `file.uploaded`, each deleted file counted exactly once);
5. a client holds at most one active session, and a session has at most one successor;
7. no audit row holds a raw session id.

`make test` runs a bounded run on SQLite and the local store with a fixed seed: the same request
sequences every time (threads may interleave differently, and the checks accept exactly the
outcomes the SPEC allows each interleaving). `make fuzz` runs a longer one on PostgreSQL and
SeaweedFS with a new seed, through the environment:
CHAT_APP_FUZZ_MODEL_BACKEND (`sqlite-local` or `postgresql-s3`), CHAT_APP_FUZZ_MODEL_EXAMPLES
(request sequences), CHAT_APP_FUZZ_MODEL_STEPS (requests per sequence) and CHAT_APP_FUZZ_SEED.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import hypothesis
import pytest
import sqlalchemy as sa
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import Session, col, select

from chat_app import migrations
from chat_app.container import Services, build_services
from chat_app.db import get_engine
from chat_app.errors import AppError, ResetConflict, SessionNotFound
from chat_app.models import AuditLog, ChatMessage, SessionFile, UserSession, utcnow
from chat_app.services.assistant.retrieval import RetrievalAssistant
from chat_app.services.audit import RequestContext
from chat_app.services.chat import Reply
from chat_app.services.files import FileView
from chat_app.services.sessions import ResetResult
from chat_app.services.uploads import begin_upload, upload_stream
from chat_app.settings import Settings
from chat_app.storage.base import ObjectStore
from chat_app.storage.local import LocalStore
from chat_app.storage.signing import UrlSigner
from tests.aio import run_async
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.invariants import assert_no_stale_orphans, assert_stored_rows_have_objects
from tests.leaks import ids_in
from tests.malformed_ids import MALFORMED_IDS
from tests.services.conftest import put_object
from tests.services.session_model import (
    ACTIVE,
    DELETED,
    EXPIRED,
    FAILED,
    PENDING,
    RESET,
    STORED,
    Event,
    ModelFile,
    ModelSession,
    Policy,
    Rejected,
    ServicesModel,
    UploadSpec,
    canonical_details,
    canonical_id,
)

BACKEND = os.environ.get("CHAT_APP_FUZZ_MODEL_BACKEND", "sqlite-local")
EXAMPLES = int(os.environ.get("CHAT_APP_FUZZ_MODEL_EXAMPLES", "20"))
STEPS = int(os.environ.get("CHAT_APP_FUZZ_MODEL_STEPS", "40"))
SEED = int(os.environ.get("CHAT_APP_FUZZ_SEED", "20260101"))
BACKENDS = ("sqlite-local", "postgresql-s3")

SECRET = "model-check-secret"
#: Short lifetimes and small limits, so a few dozen steps reach every edge.
POLICY = Policy(idle=timedelta(days=2), max_age=timedelta(days=5),
                grace=timedelta(minutes=60), max_files=3, max_bytes=10_000)
#: The same limits as the services' settings (the model reads POLICY, the services these).
SETTINGS = {
    "CHAT_APP_SESSION_IDLE_DAYS": str(POLICY.idle / timedelta(days=1)),
    "CHAT_APP_SESSION_MAX_DAYS": str(POLICY.max_age / timedelta(days=1)),
    "CHAT_APP_ORPHAN_GRACE_MINUTES": str(POLICY.grace / timedelta(minutes=1)),
    "CHAT_APP_MAX_FILES_PER_SESSION": str(POLICY.max_files),
    "CHAT_APP_MAX_UPLOAD_MB": str(POLICY.max_bytes / 2**20),
    "CHAT_APP_SECRET_KEY": SECRET,
    "CHAT_APP_ASSISTANT": "retrieval",
    "REDIS_URL": None,
}
CLIENTS = ("ana", "ben", "cy")
WORDS = ("kettle", "lantern", "compass", "violin")
#: Whole minutes, so the milliseconds each step adds never decide a boundary: one touch
#: interval, past the grace period, a day, exactly the idle lifetime.
CLOCK_STEPS = (timedelta(minutes=1), timedelta(minutes=61), timedelta(days=1), timedelta(days=2))
UPLOAD_KINDS = ("text", "text", "text", "image", "wrong_ext", "mismatch", "too_large", "empty")
RACE_TIMEOUT_S = 120
IP = "198.51.100.23"


# --- what clients send ----------------------------------------------------------------------------


def tiny_png() -> bytes:
    """A real 1x1 PNG, built rather than pasted so its bytes are visibly well-formed."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x7f")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def note(word: str) -> bytes:
    return f"# {word.title()}\n\nThe {word} is kept in the cupboard.\n".encode()


def upload_spec(kind: str, word: str) -> UploadSpec:
    """A file of `kind`; text files are about `word`, so the assistant can be asked about it."""
    if kind == "text":
        return UploadSpec(kind, f"{word}.md", note(word), word, "text/markdown")
    if kind == "image":
        return UploadSpec(kind, "pixel.png", tiny_png(), None, "image/png")
    if kind == "wrong_ext":
        return UploadSpec(kind, f"{word}.exe", note(word))
    if kind == "mismatch":
        return UploadSpec(kind, f"{word}.png", note(word), None, "image/png")
    if kind == "too_large":
        return UploadSpec(kind, f"{word}.txt", b"a" * (POLICY.max_bytes + 1), word, "text/plain")
    return UploadSpec(kind, "empty.txt", b"", None, "text/plain")


def long_note(word: str) -> UploadSpec:
    """A text larger than the sniffed head: its first bytes start the upload (a `pending` row)."""
    body = (f"The {word} is kept in the cupboard. " * 300)[: POLICY.max_bytes - 100]
    return UploadSpec("text", f"{word}-long.txt", body.encode(), word, "text/plain")


def question(word: str) -> str:
    return f"Where is the {word} kept?"


def tampered(kind: str, current: str | None, picked: str) -> str:
    """A stored id a client should not have: a near miss of a real id, or junk."""
    real = current or picked
    forms = {
        "braces": "{" + real + "}", "urn": "urn:uuid:" + real, "bare": real.replace("-", ""),
        "spaced": real + " ", "junk": picked,
    }
    return forms[kind]


# --- the clock and the per-example database and store ---------------------------------------------


class StepClock:
    """Frozen within a step; each step is 1 ms after the last, and `advance` jumps ahead."""

    def __init__(self) -> None:
        # Whole seconds: S3 lists modification times in seconds, so none falls before the start.
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(milliseconds=1)

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Example:
    url: str
    store: ObjectStore
    folder: Path


@dataclass
class Bench:
    """A migrated template database and a store; every example gets a fresh copy of both."""

    kind: str
    folder: Path
    template_url: str
    s3_store: ObjectStore | None = None
    opened: int = 0

    def open(self) -> Example:
        self.opened += 1
        folder = self.folder / f"example-{self.opened}"
        folder.mkdir()
        if self.kind == "sqlite-local":
            # A copy of the migrated file: much faster than migrating once per example.
            template = Path(sa.engine.make_url(self.template_url).database or "")
            shutil.copyfile(template, folder / "chat_app.db")
            url = f"sqlite:///{folder / 'chat_app.db'}"
            return Example(url, LocalStore(folder / "store", signer=UrlSigner(SECRET.encode())),
                           folder)
        assert self.s3_store is not None
        return Example(create_postgres_database(sa.engine.make_url(self.template_url).database),
                       self.s3_store, folder)

    def close(self, example: Example, engine: sa.engine.Engine) -> None:
        # This engine, not get_engine(url): the cache may have let it go after other examples.
        engine.dispose()
        if self.kind == "postgresql-s3":
            drop_postgres_database(example.url)
            # One bucket for the whole run, emptied between examples (a bucket each is slow).
            keys = [obj.key for obj in example.store.iter_keys("")]
            for start in range(0, len(keys), 1000):
                example.store.delete_many(keys[start:start + 1000])
        shutil.rmtree(example.folder, ignore_errors=True)


@pytest.fixture
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    """The backend CHAT_APP_FUZZ_MODEL_BACKEND names, migrated once for every example."""
    if BACKEND not in BACKENDS:
        raise ValueError(f"CHAT_APP_FUZZ_MODEL_BACKEND must be one of {BACKENDS}, not {BACKEND!r}")
    if BACKEND == "sqlite-local":
        url = f"sqlite:///{tmp_path / 'template.db'}"
        migrations.upgrade(url)
        get_engine(url).dispose()  # closes the WAL into the file before it is copied
        yield Bench(BACKEND, tmp_path, url)
        return
    url = create_postgres_database()
    try:
        migrations.upgrade(url)
        get_engine(url).dispose()  # a template must have no open connections
        yield Bench(BACKEND, tmp_path, url, s3_store=request.getfixturevalue("make_s3_store")())
    finally:
        drop_postgres_database(url)


# --- running requests -----------------------------------------------------------------------------


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the AppError it raised (an expected refusal, for the model)."""
    try:
        return call()
    except AppError as error:
        return error


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, released together; each one's result or the error it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except Exception as error:  # every outcome goes to the model, which judges it
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=RACE_TIMEOUT_S) for future in futures]


def converse(services: Services, raw_id: object, text: str, ctx: RequestContext) -> Reply:
    """Send a message and read the whole reply, as the UI's background event does."""
    reply = services.chat.reply(services.chat.begin_turn(raw_id, text, ctx))

    async def drain() -> None:
        async for _piece in reply.tokens():
            pass

    run_async(drain)
    return reply


def choose(data: st.DataObject, items: list[Any], label: str) -> Any:
    """One of `items`, drawn as an index of a fixed range.

    How many items there are can depend on how a race went, and Hypothesis requires every
    replay of a test case to draw from the same distributions.
    """
    return items[data.draw(st.integers(0, 1023), label=label) % len(items)]


# --- the state machine ----------------------------------------------------------------------------


class ServicesMachine(RuleBasedStateMachine):
    """Real services on a fresh database and store per example, checked against the model."""

    bench: ClassVar[Bench]
    #: What the run exercised, over every example: audit events (with their reason) and race
    #: outcomes. Printed at the end, so a run that never reached an edge shows it.
    tally: ClassVar[Counter[str]]

    def __init__(self) -> None:
        super().__init__()
        self.example = self.bench.open()
        self.clock = StepClock()
        settings = Settings(**{**SETTINGS, "DATABASE_URL": self.example.url,
                               "CHAT_APP_DATA_DIR": str(self.example.folder / "data")})
        self.services = build_services(settings, store=self.example.store,
                                       assistant=RetrievalAssistant(pace_s=0), clock=self.clock)
        self.model = ServicesModel(CLIENTS, clock=self.clock, secret=SECRET.encode(),
                                   policy=POLICY)
        self.audit_log: list[tuple[Any, ...]] = []
        #: Unknown ids clients made up: they must not reach an audit row either.
        self.forged: set[str] = set()
        self.steps = 0

    def teardown(self) -> None:
        self.bench.close(self.example, self.services.engine)

    # --- helpers -----------------------------------------------------------------------------

    def begin(self) -> None:
        """Every request arrives a millisecond after the previous one."""
        self.clock.tick()
        self.steps += 1
        self.tally["steps"] += 1
        self.model.begin_step()

    def ctx(self, actor: str = "browser") -> RequestContext:
        return RequestContext(actor=actor, ip=IP, request_id=f"model-check-{self.steps}",
                              user_agent="model-check", received_at=self.clock())

    def sid(self, client: str) -> str | None:
        return self.model.clients[client]

    def has_resumable(self) -> bool:
        return any(self.model.resumable(client) for client in CLIENTS)

    def pick_resumable(self, data: st.DataObject) -> tuple[str, ModelSession]:
        client = choose(data, [c for c in CLIENTS if self.model.resumable(c) is not None],
                        "client")
        session = self.model.resumable(client)
        assert session is not None
        return client, session

    def file_rows(self, session: ModelSession) -> dict[str, SessionFile]:
        with Session(self.services.engine) as db:
            rows = db.exec(select(SessionFile).where(SessionFile.session_id == session.id))
            return {row.id: row for row in rows}

    def unseen_rows(self, session: ModelSession) -> list[SessionFile]:
        """File rows of the session the model has not been told about."""
        return [row for row in self.file_rows(session).values() if row.id not in session.files]

    def listing(self) -> dict[str, tuple[int, datetime]]:
        return {obj.key: (obj.size, obj.modified)
                for obj in self.services.store.iter_keys("sessions/")}

    # --- sessions ----------------------------------------------------------------------------

    @initialize(stray=st.uuids(version=4), leftovers=st.booleans())
    def first_visits(self, stray: uuid.UUID, leftovers: bool) -> None:
        """Every client loads the page once first: most requests then have a session to use.

        Usually the store also holds what a crashed process left (an object without a row, an
        upload stuck `pending`), so that most sequences give the sweep something to clean.
        """
        self.begin()
        for client in CLIENTS:
            self.load_page(client)
        if leftovers:
            self.put_orphan("stray", (stray, uuid.UUID(int=stray.int ^ 1, version=4)), 16)
            self.start_upload(CLIENTS[0], WORDS[0], crash=True)

    @rule(client=st.sampled_from(CLIENTS))
    def open_page(self, client: str) -> None:
        self.begin()
        self.load_page(client)

    def load_page(self, client: str) -> None:
        result = self.services.sessions.open_for_browser(self.sid(client), self.ctx())
        self.model.opened(client, result, "browser")

    @rule(client=st.sampled_from(CLIENTS))
    def create_via_api(self, client: str) -> None:
        self.begin()
        view = self.services.sessions.create(self.ctx("api"), reason="api")
        self.model.issue(client, view, reason="api", actor="api")

    @rule(client=st.sampled_from(CLIENTS))
    def resume(self, client: str) -> None:
        self.begin()
        outcome = attempt(lambda: self.services.sessions.resume(self.sid(client), self.ctx()))
        self.model.resumed(client, outcome, "browser")

    @rule(client=st.sampled_from(CLIENTS))
    def reset(self, client: str) -> None:
        self.begin()
        outcome = attempt(lambda: self.services.sessions.reset(self.sid(client), self.ctx()))
        self.model.was_reset(client, outcome, "browser")

    @rule(client=st.sampled_from(CLIENTS),
          kind=st.sampled_from(["unknown", "stale", "upper", "braces", "urn", "bare", "spaced",
                                "junk"]),
          made_up=st.uuids(version=4), junk=st.sampled_from(MALFORMED_IDS))
    def tamper(self, client: str, kind: str, made_up: uuid.UUID, junk: str) -> None:
        """The client's stored id changes behind the app's back (edited, copied, restored)."""
        self.begin()
        current = self.sid(client)
        ended = [s.uuid for s in self.model.sessions.values() if s.status != ACTIVE]
        if kind == "stale" and ended:
            value = ended[made_up.int % len(ended)]
        elif kind == "upper" and current:
            value = current.upper()
        elif kind in {"braces", "urn", "bare", "spaced"}:
            value = tampered(kind, current, str(made_up))
        elif kind == "junk":
            value = junk
        else:
            value = str(made_up)
        if str(made_up) in value and str(made_up) not in self.model.sessions:
            self.forged.add(str(made_up))
        self.model.move_client(client, value)

    @precondition(lambda self: self.has_resumable())
    @rule(data=st.data(), racers=st.integers(2, 3))
    def reset_race(self, data: st.DataObject, racers: int) -> None:
        """Several tabs reset one session at once: exactly one wins (SPEC 4, 11.5)."""
        self.begin()
        client, session = self.pick_resumable(data)
        raw, ctx, erased = self.sid(client), self.ctx(), self.model.reset_erases(session)
        outcomes = race(*[lambda: self.services.sessions.reset(raw, ctx)] * racers)
        winners = [o for o in outcomes if isinstance(o, ResetResult)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, ResetConflict) for o in outcomes if o is not winners[0]), outcomes
        won = winners[0]
        self.tally[f"race: {racers} resets"] += 1
        assert (won.erased_messages, won.erased_files, won.erased_bytes) == erased
        self.model.raced_resumes(session, racers, "browser")
        self.model.reset(client, session, won.session, "browser", erased=erased)
        if erased[1]:
            self.model.must("files.purged", session.ref, "browser", files=erased[1],
                            bytes=erased[2], failed=0)

    # --- files -------------------------------------------------------------------------------

    @rule(client=st.sampled_from(CLIENTS), kind=st.sampled_from(UPLOAD_KINDS),
          word=st.sampled_from(WORDS))
    def upload(self, client: str, kind: str, word: str) -> None:
        self.begin()
        spec = upload_spec(kind, word)
        outcome = attempt(lambda: upload_stream(
            self.services.files, self.sid(client), spec.name, io.BytesIO(spec.data), self.ctx()))
        self.model.uploaded(client, spec, outcome, "browser")
        if isinstance(outcome, FileView):
            key = self.model.sessions[canonical_id(self.sid(client))].files[outcome.id].key
            assert b"".join(self.services.store.open(key)) == spec.data

    @rule(client=st.sampled_from(CLIENTS), word=st.sampled_from(WORDS), crash=st.booleans())
    def interrupted_upload(self, client: str, word: str, crash: bool) -> None:
        """An upload stops after its first bytes: the client leaves, or the process dies.

        A departed client's upload is abandoned (row `failed`); a crashed process leaves its
        row `pending` for the sweep to retire after the grace period.
        """
        self.begin()
        self.start_upload(client, word, crash=crash)

    def start_upload(self, client: str, word: str, *, crash: bool) -> None:
        spec = long_note(word)
        ctx = self.ctx()

        def start() -> Any:
            upload = begin_upload(self.services.files, self.sid(client), spec.name, ctx)
            upload.feed(spec.data)  # more than the sniffed head: the row is `pending` now
            return upload

        outcome = attempt(start)
        found = canonical_id(self.sid(client))
        owner = self.model.sessions.get(found) if found else None
        pending = [row.id for row in self.unseen_rows(owner)] if owner else []
        assert len(pending) <= 1, pending
        session = self.model.started(client, spec, outcome, "browser",
                                     pending[0] if pending else None)
        if session is None or crash:
            return
        outcome.abandon()
        session.files[pending[0]].status = FAILED
        self.model.must("file.rejected", session.ref, "browser", reason="abandoned")

    @precondition(lambda self: self.has_resumable())
    @rule(data=st.data(), words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=2))
    def upload_race(self, data: st.DataObject, words: list[str]) -> None:
        """Two uploads at once: the file limit holds (only one gets the last slot)."""
        self.begin()
        client, session = self.pick_resumable(data)
        raw, ctx = self.sid(client), self.ctx()
        specs = [upload_spec("text", word) for word in words]
        free = POLICY.max_files - len(session.holding(STORED, PENDING))
        outcomes = race(*[
            (lambda spec=spec: upload_stream(self.services.files, raw, spec.name,
                                             io.BytesIO(spec.data), ctx))
            for spec in specs
        ])
        self.model.raced_resumes(session, len(specs), "browser")
        accepted = [o for o in outcomes if isinstance(o, FileView)]
        assert len(accepted) == min(len(specs), max(free, 0)), (free, outcomes)
        self.tally[f"race: 2 uploads, {len(accepted)} accepted"] += 1
        for spec, outcome in zip(specs, outcomes, strict=True):
            if isinstance(outcome, FileView):
                self.model.stored(session, spec, outcome, "browser")
            else:
                self.model.refused_upload(session, outcome, "too-many-files", "browser")

    @rule(client=st.sampled_from(CLIENTS), data=st.data())
    def delete_file(self, client: str, data: st.DataObject) -> None:
        """Delete one of the session's files, a gone one, another session's, or a made-up id."""
        self.begin()
        found = canonical_id(self.sid(client))
        own = self.model.sessions[found].files if found in self.model.sessions else {}
        others = [f for s in self.model.sessions.values() if s.uuid != found
                  for f in s.files]
        candidates = [*own, *others, str(uuid.UUID(int=self.steps, version=4))]
        file_id = choose(data, candidates, "file")
        outcome = attempt(lambda: self.services.files.delete_file(self.sid(client), file_id,
                                                                  self.ctx()))
        self.model.deleted(client, file_id, outcome, "browser")

    @rule(data=st.data())
    def delete_race(self, data: st.DataObject) -> None:
        """Two tabs delete one file at once: one deletion, one audit row."""
        self.begin()
        holders = [c for c in CLIENTS if (s := self.model.resumable(c)) and s.holding(STORED)]
        if not holders:
            return  # nothing to delete (a rule's availability must not depend on a race)
        client = choose(data, holders, "client")
        session = self.model.resumable(client)
        assert session is not None
        target = choose(data, [f.id for f in session.holding(STORED)], "file")
        raw, ctx = self.sid(client), self.ctx()
        outcomes = race(*[lambda: self.services.files.delete_file(raw, target, ctx)] * 2)
        assert outcomes == [None, None], outcomes
        self.tally["race: 2 deletes"] += 1
        self.model.raced_resumes(session, 2, "browser")
        held = session.files[target]
        held.status = DELETED
        self.model.must("file.deleted", session.ref, "browser", bytes=held.size)

    # --- chat --------------------------------------------------------------------------------

    @rule(client=st.sampled_from(CLIENTS), word=st.sampled_from(WORDS), blank=st.booleans())
    def send_message(self, client: str, word: str, blank: bool) -> None:
        self.begin()
        text = " \t\n" if blank else question(word)
        outcome = attempt(lambda: converse(self.services, self.sid(client), text, self.ctx()))
        self.model.sent(client, text, outcome, "browser")

    # --- a reset racing another request of the same session ----------------------------------

    @precondition(lambda self: self.has_resumable())
    @rule(data=st.data(), partner=st.sampled_from(["upload", "message", "delete"]),
          word=st.sampled_from(WORDS), head_start=st.sampled_from([0.0, 0.01, 0.05]))
    def reset_against(self, data: st.DataObject, partner: str, word: str,
                      head_start: float) -> None:
        """A reset in one tab while another uploads, sends or deletes in the same session.

        The other request gets a head start of a few milliseconds, or none: an upload does more
        work than a reset, and without one it would almost never land first.
        """
        self.begin()
        client, session = self.pick_resumable(data)
        raw, ctx = self.sid(client), self.ctx()
        messages, files, size = self.model.reset_erases(session)
        spec = upload_spec("text", word)
        stored = [f.id for f in session.holding(STORED)]
        if partner == "delete" and not stored:
            partner = "message"
        calls: dict[str, Callable[[], Any]] = {
            "upload": lambda: upload_stream(self.services.files, raw, spec.name,
                                            io.BytesIO(spec.data), ctx),
            "message": lambda: converse(self.services, raw, question(word), ctx),
            "delete": lambda: self.services.files.delete_file(raw, stored[0], ctx),
        }
        def reset() -> ResetResult:
            time.sleep(head_start)
            return self.services.sessions.reset(raw, ctx)

        outcome, other = race(reset, calls[partner])
        assert isinstance(outcome, ResetResult), outcome
        self.model.raced_resumes(session, 2, "browser")
        self.tally[f"race: reset vs {partner}, which "
                   + ("failed" if isinstance(other, AppError) else "went through")] += 1
        erased = (outcome.erased_messages, outcome.erased_files, outcome.erased_bytes)
        if partner == "upload":
            expected = self.upload_before_reset(session, spec, other)
            assert erased == (messages, files + expected[0], size + expected[1]), erased
        elif partner == "message":
            saved = 0
            if isinstance(other, Reply):
                # Saved before the reset (its lock orders them), so the reset erased it; the
                # reply too when it was saved before the reset committed.
                self.model.replied(session, question(word).strip(), other, "browser")
                saved = 1 + (other.message is not None)
            else:
                assert isinstance(other, SessionNotFound), other
            assert erased == (messages + saved, files, size), erased
        else:
            # The delete marks the file before the reset counts it, or the reset hides it
            # first: either way it goes, and exactly one audit row counts it (accounting).
            assert other is None or isinstance(other, SessionNotFound), other
            gone = session.files[stored[0]]
            assert erased in {(messages, files, size),
                              (messages, files - 1, size - gone.size)}, erased
            gone.status = DELETED
            self.model.may("file.deleted", session.ref, "browser")
        self.model.reset(client, session, outcome.session, "browser", erased=erased)
        if partner == "delete":
            self.model.may("files.purged", session.ref, "browser")
        elif erased[1]:
            self.model.must("files.purged", session.ref, "browser", files=erased[1],
                            bytes=erased[2], failed=0)

    def upload_before_reset(self, session: ModelSession, spec: UploadSpec,
                            outcome: Any) -> tuple[int, int]:
        """An upload racing a reset either landed first (and was erased) or left nothing."""
        if isinstance(outcome, FileView):
            self.model.stored(session, spec, outcome, "browser")
            return 1, len(spec.data)
        if isinstance(outcome, AppError) and outcome.type_slug == "too-many-files":
            self.model.refused_upload(session, outcome, "too-many-files", "browser")
            return 0, 0
        assert isinstance(outcome, SessionNotFound), outcome
        for row in self.unseen_rows(session):
            # Its row went in before the reset; the final check saw the ended session.
            assert row.status == FAILED, row.status
            session.files[row.id] = self.model_file(row, spec, FAILED)
            self.model.must("file.upload_started", session.ref, "browser")
            self.model.must("file.rejected", session.ref, "browser", reason="session_ended")
        return 0, 0

    def model_file(self, row: SessionFile, spec: UploadSpec, status: str) -> ModelFile:
        return ModelFile(row.id, row.object_key, spec.name, len(spec.data),
                         spec.content_type or "", spec.word, status, self.clock())

    # --- time and the sweep ------------------------------------------------------------------

    @rule(delta=st.sampled_from(CLOCK_STEPS))
    def advance_clock(self, delta: timedelta) -> None:
        self.begin()
        self.clock.advance(delta)

    @rule(dry_run=st.booleans(), later=st.booleans())
    def sweep(self, dry_run: bool, later: bool) -> None:
        """A sweep now, or once the grace period has passed (what a crash left is due then)."""
        self.begin()
        if later:
            self.clock.advance(POLICY.grace + timedelta(minutes=1))
        listing = self.listing()
        report = self.services.sweeper.run(self.ctx("sweep"), dry_run=dry_run)
        expected = self.model.sweep(listing, dry_run=dry_run, actor="sweep")
        got = {key: value for key, value in report.as_dict().items() if key in expected}
        assert got == expected, (got, expected)
        self.tally["sweep" + (" (dry run)" if dry_run else "") + " deleting orphans"
                   * bool(report.deleted_objects) + " retiring uploads"
                   * bool(report.retired_pending)] += 1
        if not dry_run:
            self.after_sweep()

    @rule(partner=st.sampled_from(["sweep", "reset"]), data=st.data())
    def sweep_race(self, partner: str, data: st.DataObject) -> None:
        """Two sweeps at once (two workers' background loops), or a sweep against a reset."""
        self.begin()
        if partner == "reset" and not self.has_resumable():
            partner = "sweep"
        expiring = sum(1 for s in self.model.sessions.values()
                       if s.status == ACTIVE and self.model.expiry_reason(s))
        listing, sweep_ctx = self.listing(), self.ctx("sweep")
        sweep = lambda: self.services.sweeper.run(sweep_ctx)  # noqa: E731
        if partner == "sweep":
            reports = race(sweep, sweep)
            self.model.sweep(listing, dry_run=False, actor="sweep")
            self.loosen_sweep_rows(sweeps=2)
        else:
            client, session = self.pick_resumable(data)
            raw, ctx, erased = self.sid(client), self.ctx(), self.model.reset_erases(session)
            first, outcome = race(sweep, lambda: self.services.sessions.reset(raw, ctx))
            reports = [first]
            self.model.sweep(listing, dry_run=False, actor="sweep")
            self.loosen_sweep_rows(sweeps=1)
            assert isinstance(outcome, ResetResult), outcome
            assert (outcome.erased_messages, outcome.erased_files,
                    outcome.erased_bytes) == erased
            self.model.raced_resumes(session, 1, "browser")
            self.model.reset(client, session, outcome.session, "browser", erased=erased)
            # Whichever purge gets to the `deleting` rows first audits them.
            self.model.may("files.purged", session.ref, "browser")
            self.model.may("files.purged", session.ref, "sweep")
        assert all(not isinstance(r, BaseException) for r in reports), reports
        assert sum(r.expired_sessions for r in reports) == expiring, reports
        self.tally[f"race: sweep vs {partner}"] += 1
        self.after_sweep()

    def loosen_sweep_rows(self, *, sweeps: int) -> None:
        """Racing purges share the work in any split: their rows are counted, not matched."""
        expected = self.model.expected
        purges = [e for e in expected.must if e.event == "files.purged"]
        expected.must = [e for e in expected.must
                         if e.event not in {"files.purged", "sweep.completed"}]
        for event in purges:
            self.model.may("files.purged", event.ref, "sweep", count=sweeps)
        for _ in range(sweeps):
            expected.must.append(Event("sweep.completed", None, "sweep"))
        self.model.sweeps += sweeps - 1

    def after_sweep(self) -> None:
        """SPEC 11.3, for the cutoff the sweep used."""
        assert_no_stale_orphans(self.services.engine, self.services.store,
                                older_than=self.clock() - POLICY.grace)

    @rule(kind=st.sampled_from(["stray", "own_prefix", "dead_row", "misplaced", "pending_row"]),
          ids=st.tuples(st.uuids(version=4), st.uuids(version=4)),
          size=st.integers(1, 64))
    def plant_object(self, kind: str, ids: tuple[uuid.UUID, uuid.UUID], size: int) -> None:
        """An object nobody owns: left by a crash, a restore, or a bug in an older release."""
        self.begin()
        self.put_orphan(kind, ids, size)

    def put_orphan(self, kind: str, ids: tuple[uuid.UUID, uuid.UUID], size: int) -> None:
        sessions = sorted(self.model.sessions.values(), key=lambda s: s.id)
        prefix, name = str(ids[0]), str(ids[1])
        dead = [f for s in sessions for f in s.holding(DELETED, FAILED)]
        pending = [f for s in sessions for f in s.holding(PENDING)]
        live = [(s, f) for s in sessions for f in s.holding(STORED)]
        if kind == "own_prefix" and sessions:
            prefix = sessions[ids[0].int % len(sessions)].uuid
        elif kind == "dead_row" and dead:
            prefix, name = dead[ids[0].int % len(dead)].key.split("/")[1:]
        elif kind == "pending_row" and pending:
            # A process that died after writing the object, before marking the row `stored`.
            prefix, name = pending[ids[0].int % len(pending)].key.split("/")[1:]
        elif kind == "misplaced" and live:
            # A live file's id under a prefix that is not its session's: still an orphan.
            name = live[ids[0].int % len(live)][1].id
        key = f"sessions/{prefix}/{name}"
        put_object(self.services.store, key, b"x" * size)
        self.model.orphans[key] = size

    # --- SPEC 11 after every step ------------------------------------------------------------

    @invariant()
    def spec_holds(self) -> None:
        self.probe_ended_ids()
        self.check_sessions()
        self.check_files_and_store()
        self.check_messages()
        self.check_audit_log()
        self.check_one_active_session_per_client()

    def probe_ended_ids(self) -> None:
        """11.1: an id that ended in this step is refused at once."""
        for session in self.model.ended_now:
            outcome = attempt(lambda s=session: self.services.sessions.resume(s.uuid, self.ctx()))
            reason = "expired" if session.status == EXPIRED else "ended"
            self.model.assert_refused(outcome, Rejected(reason))
            self.model.must("session.rejected", session.ref, "browser", reason=reason)

    def check_sessions(self) -> None:
        with Session(self.services.engine) as db:
            rows = list(db.exec(select(UserSession)))
        by_id = {row.id: row.uuid for row in rows}
        assert {row.uuid for row in rows} == set(self.model.sessions), \
            "the database holds other sessions than the ones issued (a lookup created a row?)"
        for row in rows:
            model = self.model.sessions[row.uuid]
            assert (row.id, row.status, row.end_reason) == (model.id, model.status,
                                                            model.end_reason), row
            assert (row.created_at, row.last_seen_at) == (model.created_at, model.last_seen_at)
            assert (row.ended_at is None) == (model.status == ACTIVE), row
            predecessor = by_id.get(row.predecessor_id) if row.predecessor_id else None
            assert predecessor == model.predecessor, row

    def check_files_and_store(self) -> None:
        """11.2 and the store's exact content."""
        with Session(self.services.engine) as db:
            rows = {row.id: row for row in db.exec(select(SessionFile))}
        held = {f.id: (s, f) for s in self.model.sessions.values() for f in s.files.values()}
        assert set(rows) == set(held), (set(rows) ^ set(held))
        for file_id, row in rows.items():
            session, model = held[file_id]
            assert (row.session_id, row.status) == (session.id, model.status), (row, model)
            assert row.object_key == f"sessions/{session.uuid}/{file_id}" == model.key
            if model.status == STORED:
                assert (row.filename, row.size_bytes) == (model.name, model.size)
        assert_stored_rows_have_objects(self.services.engine, self.services.store)
        listing = self.listing()
        assert set(listing) == self.model.expected_keys(), (
            f"objects nobody expects: {sorted(set(listing) - self.model.expected_keys())}; "
            f"missing: {sorted(self.model.expected_keys() - set(listing))}")

    def check_messages(self) -> None:
        with Session(self.services.engine) as db:
            rows = list(db.exec(select(ChatMessage).order_by(col(ChatMessage.id))))
        ids = {s.id: s for s in self.model.sessions.values()}
        found: dict[int, list[tuple[str, str | None]]] = {}
        for row in rows:
            content = row.content if row.role == "user" else None
            found.setdefault(row.session_id, []).append((row.role, content))
            assert row.status == "complete", row
        for session_id, session in ids.items():
            assert found.get(session_id, []) == session.messages, session.uuid

    def check_audit_log(self) -> None:
        """11.4 (append-only, this step's rows, every change accounted) and 11.7."""
        with Session(self.services.engine) as db:
            rows = list(db.exec(select(AuditLog).order_by(col(AuditLog.id))))
        seen = [audit_tuple(row) for row in rows]
        old = len(self.audit_log)
        assert seen[:old] == self.audit_log, "audit rows were changed or removed"
        self.audit_log = seen
        new = rows[old:]
        written = [Event(r.event, r.session_ref, r.actor, canonical_details(r.details))
                   for r in new]
        for row in new:
            self.tally[" ".join([row.event, *[str(row.details[k]) for k in ("reason",)
                                              if k in row.details]])] += 1
        problem = self.model.expected.mismatch(written)
        assert problem is None, problem
        self.model.expected.must.clear()
        self.model.expected.maybe.clear()
        raw_ids = set(self.model.sessions) | self.forged
        by_ref = {s.ref: s for s in self.model.sessions.values()}
        for row in new:
            text = json.dumps(audit_tuple(row), default=str)
            assert not ids_in(text, raw_ids), f"SPEC 11.7: a raw session id in {text}"
            owner = by_ref.get(row.session_ref or "")
            assert row.session_id == (owner.id if owner else None), row
        self.check_accounting(rows)

    def check_accounting(self, rows: list[AuditLog]) -> None:
        """Every state change has its row, whatever order racing requests took."""
        count: Counter[tuple[str, str | None]] = Counter((r.event, r.session_ref) for r in rows)
        purged: Counter[str | None] = Counter()
        for row in rows:
            if row.event == "files.purged":
                purged[row.session_ref] += row.details["files"]
        for s in self.model.sessions.values():
            assert count["session.created", s.ref] == 1, s.uuid
            assert count["session.reset", s.ref] == (s.status == RESET), s.uuid
            assert count["session.expired", s.ref] == (s.status == EXPIRED), s.uuid
            assert count["message.sent", s.ref] == s.sent, s.uuid
            assert count["file.uploaded", s.ref] == len(s.holding(STORED, DELETED)), s.uuid
            deleted = count["file.deleted", s.ref] + purged[s.ref]
            assert deleted == len(s.holding(DELETED)), (
                f"{len(s.holding(DELETED))} files deleted, counted {deleted} times in the audit "
                f"log ({count['file.deleted', s.ref]} file.deleted, {purged[s.ref]} purged)")
        assert count["sweep.completed", None] == self.model.sweeps

    def check_one_active_session_per_client(self) -> None:
        """11.5: one active session per client (unless it dropped one); one successor each."""
        with Session(self.services.engine) as db:
            successors = list(db.exec(
                select(UserSession.predecessor_id).where(col(UserSession.predecessor_id)
                                                         .is_not(None))))
        assert len(successors) == len(set(successors)), "a session has two successors"
        for client in CLIENTS:
            held = [s for s in self.model.sessions.values()
                    if s.owner == client and s.status == ACTIVE and not s.abandoned]
            assert len(held) <= 1, (client, [s.uuid for s in held])


def audit_tuple(row: AuditLog) -> tuple[Any, ...]:
    return (row.id, row.at, row.event, row.session_id, row.session_ref, row.actor, row.ip_hash,
            row.request_id, json.dumps(row.details, sort_keys=True))


# --- the test -------------------------------------------------------------------------------------


def print_summary(request: pytest.FixtureRequest, text: str) -> None:
    """Write `text` to the terminal even under -q and output capture (like the API fuzzing)."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line("\n" + text)


def test_services_keep_the_spec_invariants(bench: Bench, request: pytest.FixtureRequest) -> None:
    tally: Counter[str] = Counter()
    machine = type("Machine", (ServicesMachine,), {"bench": bench, "tally": tally})
    hypothesis.seed(SEED)(machine)
    run_state_machine_as_test(machine, settings=hypothesis.settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,  # nothing replayed from earlier runs: the seed alone decides
        suppress_health_check=list(hypothesis.HealthCheck),
    ))
    print_summary(request, f"model check ({BACKEND}, CHAT_APP_FUZZ_SEED={SEED}): "
                  f"{bench.opened} sequences, {tally['steps']} steps; audit rows and races: "
                  + ", ".join(f"{name} {n}" for name, n in sorted(tally.items())
                              if name != "steps"))
