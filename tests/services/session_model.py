"""A plain model of what the services promise (SPEC 4, 5, 7), for the stateful model check.

The model never reads the database or the store. Told what a client asked for and what the
services answered, it predicts that answer from its own state, asserts the two agree, applies
the change, and lists the audit rows the step must (and, under concurrency, may) have written.
Where a race makes the outcome legitimately depend on timing (which of two uploads got the last
slot), the caller passes what happened and the model checks it is one of the allowed outcomes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chat_app.errors import AppError, InvalidInput, MalformedSessionId, NotFound, SessionNotFound
from chat_app.services.chat import Reply
from chat_app.services.files import FileView
from chat_app.services.sessions import OpenResult, ResetResult, SessionView

ACTIVE, RESET, EXPIRED = "active", "reset", "expired"
STORED, DELETED, PENDING, FAILED = "stored", "deleted", "pending", "failed"
#: Details of an event the model cannot predict exactly (a race decides them).
ANY = "*"
# SPEC 4's accepted form, written out again rather than imported: the model must not share
# the code it checks.
_SESSION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Policy:
    """The limits the services run with (the model check's settings)."""

    idle: timedelta
    max_age: timedelta
    grace: timedelta
    max_files: int
    max_bytes: int
    touch_interval: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Event:
    """One audit row as the model sees it; `details` is canonical JSON or ANY."""

    event: str
    ref: str | None
    actor: str
    details: str = ANY

    def matches(self, row: Event) -> bool:
        return (self.event, self.ref, self.actor) == (row.event, row.ref, row.actor) and (
            self.details == ANY or self.details == row.details
        )


def canonical_details(details: dict[str, Any] | None) -> str:
    """Details as compared: sorted JSON, without the one figure no model can know (duration)."""
    kept = {k: v for k, v in (details or {}).items() if k != "duration_s"}
    return json.dumps(kept, sort_keys=True)


@dataclass
class Expected:
    """The audit rows one step must write, and those it may write (races)."""

    must: list[Event] = field(default_factory=list)
    maybe: list[Event] = field(default_factory=list)

    def mismatch(self, written: list[Event]) -> str | None:
        """Why `written` is not `must` plus some of `maybe`, or None when it is."""
        left = list(written)
        missing = [e for e in _exact_first(self.must) if not _take(left, e)]
        unexplained = []
        spare = _exact_first(self.maybe)
        for row in list(left):
            match = next((m for m in spare if m.matches(row)), None)
            if match is None:
                unexplained.append(row)
            else:
                spare.remove(match)
        if not missing and not unexplained:
            return None
        return (f"audit rows missing: {missing}\naudit rows nobody asked for: {unexplained}\n"
                f"all rows of the step: {written}")


def _exact_first(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.details == ANY)


def _take(rows: list[Event], pattern: Event) -> bool:
    for row in rows:
        if pattern.matches(row):
            rows.remove(row)
            return True
    return False


@dataclass(frozen=True)
class UploadSpec:
    """One file a client uploads: `kind` says whether and why the services must refuse it."""

    kind: str  # text, image, wrong_ext, mismatch, too_large, empty
    name: str
    data: bytes
    word: str | None = None
    #: What the services must record; None for a file they refuse by its extension.
    content_type: str | None = None


class Rejected(Exception):
    """The model's verdict that an id does not resume: malformed, unknown, ended or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ModelFile:
    """A file row as the model expects it."""

    id: str
    key: str
    name: str
    size: int
    content_type: str
    #: The word a text file is about (the assistant must quote it); None for images.
    word: str | None
    status: str
    created_at: datetime


@dataclass
class ModelSession:
    """A session row as the model expects it, with its files and messages."""

    id: int
    uuid: str
    ref: str
    owner: str
    status: str
    created_at: datetime
    last_seen_at: datetime
    end_reason: str | None = None
    predecessor: str | None = None
    files: dict[str, ModelFile] = field(default_factory=dict)
    #: (role, content); the assistant's content is not modelled (None).
    messages: list[tuple[str, str | None]] = field(default_factory=list)
    #: Its client moved to another id without ending it (tampered storage, a new API session).
    abandoned: bool = False
    #: Messages the user sent (each has its `message.sent` row, erased messages included).
    sent: int = 0

    def holding(self, *statuses: str) -> list[ModelFile]:
        return [f for f in self.files.values() if f.status in statuses]


def canonical_id(raw: object) -> str | None:
    """The lower-case id SPEC 4 accepts, or None when `raw` is malformed."""
    if not isinstance(raw, str) or not raw.isascii():
        return None
    lowered = raw.lower()
    return lowered if _SESSION_ID.fullmatch(lowered) else None


class ServicesModel:
    """Clients (each holding a stored id, or none), sessions, their files and messages."""

    def __init__(self, clients: Iterable[str], *, clock: Callable[[], datetime], secret: bytes,
                 policy: Policy) -> None:
        self.clock = clock
        self.secret = secret
        self.policy = policy
        self.clients: dict[str, str | None] = dict.fromkeys(clients)
        self.sessions: dict[str, ModelSession] = {}
        #: Objects written behind the services' back: key -> size.
        self.orphans: dict[str, int] = {}
        self.sweeps = 0
        self.expected = Expected()
        #: Sessions that ended in the current step (SPEC 11.1 probes them right after).
        self.ended_now: list[ModelSession] = []

    # --- bookkeeping -------------------------------------------------------------------------

    def begin_step(self) -> None:
        self.expected = Expected()
        self.ended_now = []

    def ref(self, session_uuid: str) -> str:
        """SPEC 3: the first 16 hex characters of HMAC-SHA256 of the uuid."""
        return hmac.new(self.secret, session_uuid.encode(), hashlib.sha256).hexdigest()[:16]

    def must(self, event: str, ref: str | None, actor: str, **details: Any) -> None:
        self.expected.must.append(Event(event, ref, actor, canonical_details(details)))

    def may(self, event: str, ref: str | None, actor: str, count: int = 1,
            details: dict[str, Any] | None = None) -> None:
        shape = ANY if details is None else canonical_details(details)
        self.expected.maybe.extend([Event(event, ref, actor, shape)] * count)

    def session_of(self, client: str) -> ModelSession | None:
        """The session the client's stored id names, whatever its state."""
        found = canonical_id(self.clients[client])
        return self.sessions.get(found) if found else None

    def resumable(self, client: str) -> ModelSession | None:
        """The client's session if a resume now would succeed."""
        session = self.session_of(client)
        if session is None or session.status != ACTIVE or self.expiry_reason(session):
            return None
        return session

    def expected_keys(self) -> set[str]:
        """Every object the store must hold: stored files' and the planted orphans'."""
        keys = {f.key for s in self.sessions.values() for f in s.holding(STORED)}
        return keys | set(self.orphans)

    def move_client(self, client: str, new_id: str | None) -> None:
        """Point the client at another id; an active session it leaves behind is abandoned."""
        old = self.session_of(client)
        if old is not None and old.status == ACTIVE and canonical_id(new_id) != old.uuid:
            old.abandoned = True
        self.clients[client] = new_id

    # --- session life (SPEC 4) ---------------------------------------------------------------

    def expiry_reason(self, session: ModelSession) -> str | None:
        now = self.clock()
        if now >= session.created_at + self.policy.max_age:
            return "max_age"
        if now >= session.last_seen_at + self.policy.idle:
            return "idle"
        return None

    def touch_due(self, session: ModelSession) -> bool:
        return self.clock() - session.last_seen_at >= self.policy.touch_interval

    def resume(self, raw: object, actor: str) -> ModelSession:
        """What SessionService.resume does with `raw`: the session, or Rejected (audited)."""
        found = canonical_id(raw)
        if found is None:
            raise Rejected("malformed")  # refused before any query: no audit row
        session = self.sessions.get(found)
        if session is None:
            self.must("session.rejected", self.ref(found), actor, reason="unknown")
            raise Rejected("unknown")
        if session.status != ACTIVE:
            reason = "expired" if session.status == EXPIRED else "ended"
            self.must("session.rejected", session.ref, actor, reason=reason)
            raise Rejected(reason)
        if (why := self.expiry_reason(session)) is not None:
            self.end_expired(session, why, actor)
            self.must("session.rejected", session.ref, actor, reason="expired")
            raise Rejected("expired")
        if self.touch_due(session):
            session.last_seen_at = self.clock()
            self.must("session.resumed", session.ref, actor)
        return session

    def raced_resumes(self, session: ModelSession, racers: int, actor: str) -> None:
        """`racers` concurrent resumes of a resumable session: the first one touches it.

        The others may touch it too (they read before the first committed), or, when a racing
        reset committed first, be refused as ended.
        """
        if self.touch_due(session):
            session.last_seen_at = self.clock()
            self.must("session.resumed", session.ref, actor)
            self.may("session.resumed", session.ref, actor, racers - 1)
        self.may("session.rejected", session.ref, actor, racers - 1, {"reason": "ended"})

    def end_expired(self, session: ModelSession, reason: str, actor: str) -> None:
        session.status, session.end_reason = EXPIRED, reason
        session.messages.clear()  # erased with the expiry; files wait for the sweep
        self.must("session.expired", session.ref, actor, reason=reason)
        self.ended_now.append(session)

    def issue(self, client: str, view: SessionView, *, reason: str, actor: str,
              predecessor: ModelSession | None = None) -> ModelSession:
        """Check and record a session the services just created for `client`."""
        now = self.clock()
        assert view.uuid not in self.sessions, "a session id was issued twice"
        assert canonical_id(view.uuid) == view.uuid, "an issued id is not canonical"
        assert (view.status, view.created_at, view.last_seen_at) == (ACTIVE, now, now)
        assert view.predecessor_id == (predecessor.id if predecessor else None)
        assert view.expires_at == min(now + self.policy.idle, now + self.policy.max_age)
        session = ModelSession(view.id, view.uuid, self.ref(view.uuid), client, ACTIVE, now, now,
                               predecessor=predecessor.uuid if predecessor else None)
        self.sessions[view.uuid] = session
        self.must("session.created", session.ref, actor, reason=reason)
        self.move_client(client, view.uuid)
        return session

    def check_view(self, view: SessionView, session: ModelSession) -> None:
        assert (view.id, view.uuid, view.status) == (session.id, session.uuid, ACTIVE)
        assert view.last_seen_at == session.last_seen_at
        assert view.expires_at == min(session.last_seen_at + self.policy.idle,
                                      session.created_at + self.policy.max_age)

    def reset(self, client: str, old: ModelSession, new_view: SessionView, actor: str, *,
              erased: tuple[int, int, int]) -> ModelSession:
        """Apply a reset the services reported (`erased`: messages, files, bytes) and audit it.

        The `files.purged` row is the caller's to expect: only a race makes it uncertain.
        """
        old.status, old.end_reason = RESET, "reset"
        new = self.issue(client, new_view, reason="reset", actor=actor, predecessor=old)
        messages, files, size = erased
        old.messages.clear()
        for held in old.holding(STORED):
            held.status = DELETED  # purged right after the commit (no store faults here)
        self.must("session.reset", old.ref, actor, successor_ref=new.ref, messages=messages,
                  files=files, bytes=size)
        self.ended_now.append(old)
        return new

    def reset_erases(self, session: ModelSession) -> tuple[int, int, int]:
        """What a reset of `session` erases now: messages, stored files and their bytes."""
        stored = session.holding(STORED)
        return len(session.messages), len(stored), sum(f.size for f in stored)

    # --- expected errors -------------------------------------------------------------------

    @staticmethod
    def assert_refused(outcome: object, rejected: Rejected) -> None:
        """`outcome` is the error the services raise for this rejection."""
        if rejected.reason == "malformed":
            assert isinstance(outcome, MalformedSessionId), outcome
        else:
            assert isinstance(outcome, SessionNotFound), outcome
            assert outcome.reason == rejected.reason, (outcome.reason, rejected.reason)

    # --- one request at a time: predict, compare, apply -----------------------------------

    def opened(self, client: str, result: OpenResult, actor: str) -> None:
        """A page load (SessionService.open_for_browser) with the client's stored id."""
        stored = self.clients[client]
        if not stored:
            assert (result.outcome, result.rejected_reason) == ("first_visit", None)
            self.issue(client, result.session, reason="first_visit", actor=actor)
            return
        try:
            session = self.resume(stored, actor)
        except Rejected as rejected:
            if rejected.reason == "malformed":
                self.must("session.rejected", None, actor, reason="malformed")
            assert (result.outcome, result.rejected_reason) == ("replaced", rejected.reason)
            invalid = rejected.reason in {"malformed", "unknown"}
            self.issue(client, result.session, actor=actor,
                       reason="replaced_invalid" if invalid else "replaced_ended")
            return
        assert result.outcome == "resumed", result
        self.check_view(result.session, session)

    def resumed(self, client: str, outcome: object, actor: str) -> None:
        """SessionService.resume with the client's stored id."""
        try:
            session = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return
        assert isinstance(outcome, SessionView), outcome
        self.check_view(outcome, session)

    def was_reset(self, client: str, outcome: object, actor: str) -> None:
        """SessionService.reset, alone: a stale id is refused (404), never a 409."""
        try:
            old = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return
        assert isinstance(outcome, ResetResult), outcome
        erased = self.reset_erases(old)
        got = (outcome.erased_messages, outcome.erased_files, outcome.erased_bytes)
        assert got == erased, (got, erased)
        self.reset(client, old, outcome.session, actor, erased=erased)
        if erased[1]:
            self.must("files.purged", old.ref, actor, files=erased[1], bytes=erased[2], failed=0)

    def upload_refusal(self, session: ModelSession, spec: UploadSpec) -> str | None:
        """The problem type an upload gets, in the order the protocol checks (SPEC 5 step 1)."""
        if spec.kind == "wrong_ext":
            return "unsupported-file-type"
        if len(spec.data) > self.policy.max_bytes:
            return "file-too-large"
        if not spec.data:
            return "empty-file"
        if spec.kind == "mismatch":
            return "unsupported-file-type"
        if len(session.holding(STORED, PENDING)) >= self.policy.max_files:
            return "too-many-files"
        return None

    def uploaded(self, client: str, spec: UploadSpec, outcome: object, actor: str) -> None:
        """upload_stream of one file."""
        try:
            session = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return
        if (refusal := self.upload_refusal(session, spec)) is not None:
            self.refused_upload(session, outcome, refusal, actor)
            return
        assert isinstance(outcome, FileView), outcome
        self.stored(session, spec, outcome, actor)

    def refused_upload(self, session: ModelSession, outcome: object, refusal: str,
                       actor: str) -> None:
        assert isinstance(outcome, AppError) and outcome.type_slug == refusal, (outcome, refusal)
        self.must("file.rejected", session.ref, actor, reason=refusal)

    def stored(self, session: ModelSession, spec: UploadSpec, view: FileView, actor: str,
               *, status: str = STORED) -> ModelFile:
        """Check and record a file the services accepted."""
        assert spec.content_type is not None
        assert (view.filename, view.content_type, view.size_bytes) == (
            spec.name, spec.content_type, len(spec.data))
        assert view.id not in session.files
        held = ModelFile(view.id, f"sessions/{session.uuid}/{view.id}", spec.name,
                         len(spec.data), spec.content_type, spec.word, status, self.clock())
        session.files[view.id] = held
        self.must("file.upload_started", session.ref, actor)
        self.must("file.uploaded", session.ref, actor, bytes=len(spec.data),
                  content_type=spec.content_type)
        return held

    def started(self, client: str, spec: UploadSpec, outcome: object, actor: str,
                pending_id: str | None) -> ModelSession | None:
        """The first bytes of an upload went in (its row is `pending`); the session, if so."""
        try:
            session = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return None
        if (refusal := self.upload_refusal(session, spec)) is not None:
            self.refused_upload(session, outcome, refusal, actor)
            return None
        assert pending_id is not None and pending_id not in session.files
        session.files[pending_id] = ModelFile(
            pending_id, f"sessions/{session.uuid}/{pending_id}", spec.name, len(spec.data),
            spec.content_type or "", spec.word, PENDING, self.clock())
        self.must("file.upload_started", session.ref, actor)
        return session

    def deleted(self, client: str, file_id: str, outcome: object, actor: str) -> None:
        """FileService.delete_file; deleting twice is harmless (SPEC 5)."""
        try:
            session = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return
        held = session.files.get(file_id)
        if held is None or held.status not in (STORED, DELETED):
            assert isinstance(outcome, NotFound) and outcome.type_slug == "file-not-found", outcome
            return
        assert outcome is None, outcome
        if held.status == STORED:
            held.status = DELETED
            self.must("file.deleted", session.ref, actor, bytes=held.size)

    def sent(self, client: str, text: str, outcome: object, actor: str) -> None:
        """ChatService.begin_turn and the reply, consumed to its end."""
        try:
            session = self.resume(self.clients[client], actor)
        except Rejected as rejected:
            self.assert_refused(outcome, rejected)
            return
        cleaned = text.strip()
        if not cleaned:
            assert isinstance(outcome, InvalidInput), outcome
            return
        assert isinstance(outcome, Reply) and outcome.message is not None, outcome
        self.replied(session, cleaned, outcome, actor)

    def replied(self, session: ModelSession, question: str, reply: Reply, actor: str) -> None:
        """A turn that was saved: its audit row, and a reply that quotes only live files."""
        self.must("message.sent", session.ref, actor, chars=len(question))
        session.sent += 1
        session.messages.append(("user", question))
        if reply.message is not None:
            assert reply.message.status == "complete", reply.message
            session.messages.append(("assistant", None))
        quotable = {f.id for f in session.holding(STORED) if f.word}
        cited = {c["file_id"] for c in (reply.message.citations if reply.message else [])}
        assert cited <= quotable, f"the reply cites files it may not quote: {cited - quotable}"
        wanted = {f.id for f in session.holding(STORED) if f.word and f.word in question}
        if reply.message is not None and wanted:
            assert cited & wanted, "the reply missed the file that answers the question"

    # --- the sweep (SPEC 5) ----------------------------------------------------------------

    def sweep(self, listing: dict[str, tuple[int, datetime]], *, dry_run: bool,
              actor: str) -> dict[str, Any]:
        """Apply one sweep to the model and return the report it must give.

        `listing` is the store's content just before the sweep (key -> size, modified): the
        store, not the model, knows when an object was written.
        """
        now = self.clock()
        cutoff = now - self.policy.grace
        expiring = [s for s in self.sessions.values()
                    if s.status == ACTIVE and self.expiry_reason(s) is not None]
        doomed_ids = {s.id for s in expiring}
        if not dry_run:
            for session in expiring:
                reason = self.expiry_reason(session)
                assert reason is not None
                self.end_expired(session, reason, actor)
        ended = [s for s in self.sessions.values()
                 if (s.status != ACTIVE or s.id in doomed_ids) and s.holding(STORED)]
        purged = [f for s in ended for f in s.holding(STORED)]
        objects = dict(listing)
        if not dry_run:
            for session in ended:
                files = session.holding(STORED)
                self.must("files.purged", session.ref, actor, files=len(files),
                          bytes=sum(f.size for f in files), failed=0)
                for held in files:
                    held.status = DELETED
                    objects.pop(held.key, None)
        live = {f.key for s in self.sessions.values() if s.status == ACTIVE
                and s.id not in doomed_ids for f in s.holding(STORED, PENDING)}
        kept_for_purge = {f.key for f in purged} if dry_run else set()
        doomed = {key: size for key, (size, modified) in objects.items()
                  if modified < cutoff and key not in live and key not in kept_for_purge}
        retired = [f for s in self.sessions.values() for f in s.holding(PENDING)
                   if f.created_at < cutoff]
        if not dry_run:
            for key in doomed:
                self.orphans.pop(key, None)
            for held in retired:
                held.status = FAILED
                self.orphans.pop(held.key, None)  # what a crash after the write left behind
        report = {
            "dry_run": dry_run, "expired_sessions": len(expiring), "purged_files": len(purged),
            "scanned_objects": len(objects), "deleted_objects": len(doomed),
            "deleted_bytes": sum(doomed.values()), "retired_pending": len(retired), "errors": 0,
        }
        self.must("sweep.completed", None, actor, **report)
        self.sweeps += 1
        return report
