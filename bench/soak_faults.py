"""The soak's fault run (`python -m bench.soak --restart-store`): what each browser was told about
each upload, what is really there, and SeaweedFS killed and started again in the middle.

Issue 6 item 7: every upload answered 201 must have its object readable and its row `stored`
afterwards; every failure must be a clear 503; nothing reported as saved may be lost.

- `StoreRestart` SIGKILLs the whole `weed server` process group at a set time
  (tests/seaweed.py's `stop`), waits, and starts it again on the same ports and data dir
  (`start`, which returns once S3 writes and reads back a probe object).
- `UploadLedger` keeps, per upload, what the client was told (201 with the file's id, or the
  error) and when. After each 201 the browser reads its file back the way a user downloads it:
  `GET /session/files/{id}` (302) and the presigned URL it points to, bytes compared, before the
  loop's reset erases it. A store that is down or starting is waited for; a 404 from the app, a
  missing object or different bytes is a loss.
- `stored_checks` looks again after the run (before and after the sweep), in the database and
  the store: a 201 of a session still active must have its `stored` row and the same bytes, a
  201 of a reset session a `deleting`/`deleted` row; per session, the rows that reached `stored`
  must equal the 201s its browser got (a 503 that stored the file anyway would show here).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

#: How long a browser keeps trying to read its file back while the store is down or starting.
READ_BACK_PATIENCE_S = 90.0
READ_BACK_PAUSE_S = 0.5
#: A 404 for the object this many times in a row, with the store up, is a loss.
STORE_404S_FOR_LOSS = 3
HEALTH_EVERY_S = 0.5
#: Every this-many-th browser (0, 10, ...) is a keeper in the restart run (FaultRun.keeps).
KEEPER_EVERY = 10
#: A keeper's pause between its uploads: with the loop's own time, fewer than the SPEC's
#: `upload=20/minute` per session, and at most a handful of its 20 files for the restart.
KEEPER_PAUSE_S = 3.0
#: Problem type of the app's answer when the store is down (chat_app/storage/base.py).
STORE_DOWN = "503 storage-unavailable"
NO_ANSWER = "no answer"
VERIFIED = "verified"
LOST = "lost"
UNVERIFIED = "unverified"


@dataclass
class Outage:
    """When the store went down and came back, in seconds from the start of the load."""

    killed_at: float | None = None
    started_at: float | None = None  # `weed server` spawned again
    back_at: float | None = None  # S3 wrote and read back a probe object

    def describe(self) -> str:
        if self.killed_at is None or self.back_at is None:
            return "the store was not restarted"
        assert self.started_at is not None
        return (f"killed at {self.killed_at:.1f} s, started again at {self.started_at:.1f} s, "
                f"answering at {self.back_at:.1f} s (out for {self.back_at - self.killed_at:.1f}"
                " s)")


@dataclass
class StoreRestart:
    """SIGKILL SeaweedFS `kill_after_s` into the load, start it `down_s` later."""

    seaweed: Any  # tests.seaweed.SeaweedServer
    kill_after_s: float
    down_s: float
    outage: Outage = field(default_factory=Outage)

    async def run(self, started: float) -> None:
        """The fault, on the load's clock (perf_counter at the load's start)."""
        await asyncio.sleep(max(0.0, started + self.kill_after_s - time.perf_counter()))
        self.outage.killed_at = time.perf_counter() - started
        print(f"soak: killing SeaweedFS at {self.outage.killed_at:.1f} s", flush=True)
        await asyncio.to_thread(self.seaweed.stop)
        await asyncio.sleep(self.down_s)
        self.outage.started_at = time.perf_counter() - started
        # Spawned on the loop's (main) thread: a child forked from a worker thread would die
        # with that thread (tests/seaweed.py, PR_SET_PDEATHSIG). Only the wait runs aside.
        self.seaweed.launch()
        # Generous: under the load the machine is busy, and a store that never comes back
        # breaks the benchmark (an exception), it is not a result.
        await asyncio.to_thread(self.seaweed.wait_ready, 120)
        self.outage.back_at = time.perf_counter() - started
        print(f"soak: SeaweedFS answering again at {self.outage.back_at:.1f} s", flush=True)


@dataclass
class UploadOutcome:
    """One upload as its browser saw it."""

    browser: int
    sid: str
    sent_at: float  # seconds from the start of the load
    answered_at: float
    told: str  # "201", or the error as recorded (e.g. "503 storage-unavailable")
    file_id: str = ""
    size: int = 0
    sha256: str = ""
    content: bytes = field(default=b"", repr=False)
    read_back: str = ""  # VERIFIED, "lost: why", "unverified: why"; "" when not read
    #: A keeper's file, read back again once the restarted store answered ("" otherwise).
    after_restart: str = ""
    read_back_retries: int = 0

    @property
    def succeeded(self) -> bool:
        return self.told == "201"


#: Called with the outcome and the store after a 201, before the read-back: the tests lose an
#: object behind the app's back with it, to show that the checks catch a loss.
AfterStored = Callable[[UploadOutcome, Any], Awaitable[None]]
#: The app's `GET /session/files/{id}` for one file: its answer, or None when it failed.
FetchLink = Callable[[], Awaitable[Any]]


@dataclass
class UploadLedger:
    """Every upload and what its browser was told."""

    started: float = 0.0  # perf_counter at the start of the load
    outcomes: list[UploadOutcome] = field(default_factory=list)
    transient_404s: int = 0  # the presigned GET said 404, a later try read the bytes

    def clock(self) -> float:
        return time.perf_counter() - self.started

    def told(self, browser: int, sid: str, sent_at: float, what: str) -> UploadOutcome:
        outcome = UploadOutcome(browser, sid, sent_at, self.clock(), what)
        self.outcomes.append(outcome)
        return outcome

    @property
    def successes(self) -> list[UploadOutcome]:
        return [outcome for outcome in self.outcomes if outcome.succeeded]

    def lost(self) -> list[UploadOutcome]:
        return [o for o in self.successes
                if o.read_back.startswith(LOST) or o.after_restart.startswith(LOST)]


@dataclass
class FaultRun:
    """What the fault run adds to the soak: the ledger, the read-backs, the store restart and
    its keepers (browsers that hold their files across it)."""

    ledger: UploadLedger = field(default_factory=UploadLedger)
    restart: StoreRestart | None = None
    after_stored: AfterStored | None = None
    downloads: Any = None  # httpx.AsyncClient for presigned URLs, opened by the load
    store: Any = None  # the soak's own S3Store on the app's bucket, for `after_stored`
    rechecked: set[int] = field(default_factory=set)  # keepers done with their re-check
    #: GET /health during the restart run: (sent at, answered at, status or exception name).
    health: list[tuple[float, float, str]] = field(default_factory=list)

    async def stored(self, outcome: UploadOutcome, fetch_link: FetchLink) -> None:
        """After a 201: read the file back as a user downloads it, before the reset erases it."""
        if self.after_stored is not None:
            await self.after_stored(outcome, self.store)
        outcome.read_back = await self.read_back(outcome, fetch_link)

    async def read_back(self, outcome: UploadOutcome, fetch_link: FetchLink) -> str:
        """VERIFIED, `lost: why` or `unverified: why` for one file told 201.

        `fetch_link` is the app's `GET /session/files/{id}` (recorded as a `download`
        operation); it returns the answer, or None when the request failed.
        """
        deadline = time.perf_counter() + READ_BACK_PATIENCE_S
        misses = 0  # consecutive 404s from the store while it is up
        while True:
            verdict, why = await self._try_read_back(fetch_link, outcome.content)
            if verdict == VERIFIED:
                self.ledger.transient_404s += misses > 0
                return VERIFIED
            if verdict == LOST and why.startswith("the app"):
                return f"{LOST}: {why}"  # the row itself says the file is not stored
            # A store that is down or starting may not know the object yet: only a 404 that
            # persists once it is up again counts as a loss.
            misses = misses + 1 if verdict == LOST and self.store_up() else 0
            if misses >= STORE_404S_FOR_LOSS:
                return f"{LOST}: {why}"
            if time.perf_counter() > deadline:
                return f"{UNVERIFIED}: {why}"
            outcome.read_back_retries += 1
            await asyncio.sleep(READ_BACK_PAUSE_S)

    def store_up(self) -> bool:
        """False from the kill until the restarted store has answered its probe."""
        if self.restart is None:
            return True
        outage = self.restart.outage
        return outage.killed_at is None or outage.back_at is not None

    # --- keepers: files that must survive the restart ----------------------------------------

    def keeps(self, browser: int) -> bool:
        """True while `browser` is a keeper and the restarted store has not answered yet.

        Every other browser's files live from upload to reset, a second or so: few would
        exist when the store dies. A keeper holds one session, and its files, until the store
        is back, then reads each back once more (`recheck_due`, `kept`) before going on.
        """
        return (self.restart is not None and browser % KEEPER_EVERY == 0
                and self.restart.outage.back_at is None)

    def recheck_due(self, browser: int) -> bool:
        """True once for a keeper, the first time it runs after the store is back."""
        if self.restart is None or browser % KEEPER_EVERY or browser in self.rechecked:
            return False
        self.rechecked.add(browser)
        return True

    def kept(self, browser: int, sid: str) -> list[UploadOutcome]:
        """The keeper's files told 201 in the session it held across the restart."""
        return [o for o in self.ledger.successes if o.browser == browser and o.sid == sid]

    async def watch_health(self, client: Any, path: str, until: float,
                           answer_kind: Callable[[Any], str]) -> None:
        """Poll the app's `GET /health` as a load balancer would: until `until` and the store
        back, then once more (the last answer is taken with the store up)."""
        import httpx

        done = False
        while not done:
            done = time.perf_counter() >= until and self.store_up()
            sent = self.ledger.clock()
            try:
                what = answer_kind(await client.get(path))
            except httpx.HTTPError as exc:
                what = type(exc).__name__
            self.health.append((sent, self.ledger.clock(), what))
            if not done:
                await asyncio.sleep(HEALTH_EVERY_S)

    async def _try_read_back(self, fetch_link: Callable[[], Awaitable[Any]], content: bytes,
                             ) -> tuple[str, str]:
        import httpx

        answer = await fetch_link()
        if answer is None:  # the app failed (recorded as a download error): try again
            return UNVERIFIED, "the download link request failed"
        if answer.status_code == 404:
            return LOST, "the app answers 404 for the file"
        location = answer.headers.get("location", "")
        if answer.status_code != 302 or not location:
            return UNVERIFIED, f"the app answered {answer.status_code}"
        try:
            got = await self.downloads.get(location)
        except httpx.HTTPError as exc:  # the store is down or starting
            return UNVERIFIED, f"the store did not answer ({type(exc).__name__})"
        if got.status_code == 404:
            return LOST, "the store answers 404 for the object"
        if got.status_code != 200:
            return UNVERIFIED, f"the store answered {got.status_code}"
        if got.content != content:
            return LOST, "the store returns different bytes"
        return VERIFIED, ""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- afterwards: the database and the store against the ledger ------------------------------


@dataclass
class StoredReport:
    """`stored_checks`' findings at one moment (before or after the sweep)."""

    checked_active: int = 0
    erased_by_reset: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # file id -> what is wrong
    per_session_mismatches: list[str] = field(default_factory=list)


def stored_checks(engine: Any, store: Any, ledger: UploadLedger) -> StoredReport:
    """Each 201 against its row and object; per session, rows that reached `stored` = 201s."""
    from sqlmodel import Session, col, select

    from chat_app.models import (
        FILE_DELETED,
        FILE_DELETING,
        FILE_STORED,
        SESSION_ACTIVE,
        SessionFile,
        UserSession,
    )
    from chat_app.storage.base import ObjectNotFound

    report = StoredReport()
    told_ok = Counter(o.sid for o in ledger.successes)
    sids = {o.sid for o in ledger.outcomes}
    with Session(engine) as db:
        rows = db.exec(
            select(SessionFile, UserSession.uuid, UserSession.status)
            .join(UserSession, col(UserSession.id) == col(SessionFile.session_id))
            .where(col(UserSession.uuid).in_(sids))
        ).all()
    by_id = {row.id: (row, status) for row, _uuid, status in rows}
    # Rows that reached `stored`, whatever a reset did to them since (stored→deleting→deleted).
    reached = Counter(uuid for row, uuid, _status in rows
                      if row.status in (FILE_STORED, FILE_DELETING, FILE_DELETED))
    for sid in sorted(sids):
        if reached[sid] != told_ok[sid]:
            report.per_session_mismatches.append(
                f"{reached[sid]} rows reached `stored`, {told_ok[sid]} uploads were told 201")
    for outcome in ledger.successes:
        found = by_id.get(outcome.file_id)
        if found is None:
            report.lost[outcome.file_id] = f"browser {outcome.browser}: no row for the file"
            continue
        row, session_status = found
        if session_status != SESSION_ACTIVE:
            if row.status in (FILE_DELETING, FILE_DELETED):
                report.erased_by_reset += 1
            else:
                report.lost[outcome.file_id] = (f"browser {outcome.browser}: row "
                                                f"`{row.status}` in an ended session")
            continue
        report.checked_active += 1
        if row.status != FILE_STORED:
            report.lost[outcome.file_id] = f"browser {outcome.browser}: row `{row.status}`"
            continue
        try:
            data = b"".join(store.open(row.object_key))
        except ObjectNotFound:
            report.lost[outcome.file_id] = f"browser {outcome.browser}: object missing"
            continue
        if sha256(data) != outcome.sha256 or row.sha256 != outcome.sha256:
            report.lost[outcome.file_id] = f"browser {outcome.browser}: different bytes"
    return report


# --- report ----------------------------------------------------------------------------------


def phase_of(outcome: UploadOutcome, outage: Outage | None) -> str:
    """Before the kill, overlapping the outage (kill → store answering again), or after."""
    if outage is None or outage.killed_at is None or outage.back_at is None:
        return "no store restart"
    if outcome.answered_at < outage.killed_at:
        return "before the kill"
    if outcome.sent_at > outage.back_at:
        return "after the store answered again"
    return "overlapping the outage"


PHASES = ("before the kill", "overlapping the outage", "after the store answered again",
          "no store restart")


def phase_rows(ledger: UploadLedger, outage: Outage | None) -> list[list[str]]:
    """Per phase: uploads told 201, read back, lost, told 503 storage-unavailable, other."""
    rows = []
    groups: dict[str, list[UploadOutcome]] = {phase: [] for phase in PHASES}
    for outcome in ledger.outcomes:
        groups[phase_of(outcome, outage)].append(outcome)
    every = ledger.outcomes
    for phase, outcomes in [*groups.items(), ("**all**", every)]:
        if not outcomes and phase != "**all**":
            continue
        ok = [o for o in outcomes if o.succeeded]
        others = Counter(o.told for o in outcomes if not o.succeeded and o.told != STORE_DOWN)
        rows.append([
            phase, str(len(outcomes)), str(len(ok)),
            str(sum(o.read_back == VERIFIED for o in ok)),
            f"{sum(o.after_restart == VERIFIED for o in ok)} of "
            f"{sum(bool(o.after_restart) for o in ok)}",
            str(sum(o.read_back.startswith(LOST) or o.after_restart.startswith(LOST)
                    for o in ok)),
            str(sum(o.read_back.startswith(UNVERIFIED) for o in ok)),
            str(sum(o.told == STORE_DOWN for o in outcomes)),
            ", ".join(f"{what}: {count}" for what, count in others.items()) or "0",
        ])
    return rows


PHASE_HEADERS = ["Phase", "Uploads", "Told 201", "Read back (same bytes)",
                 "Keepers' files read back after the restart", "Lost",
                 "Not verified", "Told 503 storage-unavailable", "Other answers"]


#: (name, expected, found, ok): soak.py turns these into rows of its consistency table.
CheckRow = tuple[str, str, str, bool | None]


def is_no_answer(what: str) -> bool:
    """An exception instead of an answer (timeout, dropped connection): `ReadTimeout`, ..."""
    return not what[:1].isdigit() and what != "bad body"


def health_checks(health: list[tuple[float, float, str]], outage: Outage) -> list[CheckRow]:
    """`GET /health` says 503 while the store is out, and only then (SPEC 11.6, section 8)."""
    assert outage.killed_at is not None and outage.back_at is not None
    kinds = Counter(what for _sent, _answered, what in health)
    wrong = {what: n for what, n in kinds.items() if what not in ("200", STORE_DOWN)}
    # A 503 must overlap the outage. A 200 inside it is fine: the app's HeadBucket may find
    # the new store up before the soak's own probe (a write and a read) does.
    stray = [f"{sent:.1f}-{answered:.1f} s" for sent, answered, what in health
             if what == STORE_DOWN and (answered < outage.killed_at or sent > outage.back_at)]
    last = health[-1][2] if health else "none"
    return [
        ("8: `GET /health` polled every 0.5 s: 503 storage-unavailable while the store was "
         "out, 200 before and after", "only 200 and 503, some 503, the last 200",
         ", ".join(f"{what}: {n}" for what, n in kinds.items()) + f"; the last {last}"
         + (f"; 503 outside the outage at {stray[:3]}" if stray else ""),
         not wrong and not stray and kinds[STORE_DOWN] > 0 and last == "200"),
    ]


def fault_checks(errors: dict[str, Counter[str]], ledger: UploadLedger, before: StoredReport,
                 after: StoredReport, outage: Outage | None,
                 health: list[tuple[float, float, str]]) -> list[CheckRow]:
    """What the clients were told against what is there (SPEC 11.6: nothing lost)."""
    successes = ledger.successes
    verified = sum(o.read_back == VERIFIED for o in successes)
    unverified = Counter(o.read_back for o in successes if o.read_back.startswith(UNVERIFIED))
    by_read_back = {o.file_id: f"browser {o.browser}: {o.read_back or o.after_restart}"
                    for o in ledger.lost()}
    # One file may be found by several looks (read back lost, still missing after the run).
    lost = {**after.lost, **before.lost, **by_read_back}
    upload_errors = errors.get("upload", Counter())
    unclear = {what: n for what, n in upload_errors.items() if what != STORE_DOWN}
    elsewhere = {f"{kind} {what}": n for kind, counted in errors.items() if kind != "upload"
                 for what, n in counted.items()}
    no_answer = {f"{kind} {what}": n for kind, counted in errors.items()
                 for what, n in counted.items() if is_no_answer(what)}
    other_5xx = {f"{kind} {what}": n for kind, counted in errors.items()
                 for what, n in counted.items() if what.startswith("5") and what != STORE_DOWN}

    def listed(found: dict[str, int] | Counter[str]) -> str:
        return ", ".join(f"{what}: {n}" for what, n in found.items())

    rows: list[CheckRow] = []
    if outage is not None:
        # Stored before the kill, read back after the restart: the files that had to survive.
        crossed = [o for o in successes if outage.killed_at is not None
                   and o.answered_at < outage.killed_at and o.after_restart]
        survived = sum(o.after_restart == VERIFIED for o in crossed)
        rows.append((
            "11.6: keepers' files told 201 before the kill, read back after the restart",
            "all, at least 1", f"{survived} of {len(crossed)}", survived == len(crossed) > 0))
        rows += health_checks(health, outage)
    rows += [
        ("11.6: every upload told 201 read back by its browser (download link, same bytes)",
         f"{len(successes)} of {len(successes)}", f"{verified} of {len(successes)}"
         + (f" ({listed(unverified)})" if unverified else ""),
         verified == len(successes) and bool(successes)),
        ("11.6: **lost**: told 201, then the object missing or different, or the row not "
         "`stored`", "0", str(len(lost)) + (": " + "; ".join(list(lost.values())[:3])
                                              if lost else ""), not lost),
        ("   found by: the read-back / the check before the sweep / after the sweep", "0 / 0 / 0",
         f"{len(by_read_back)} / {len(before.lost)} / {len(after.lost)}", None),
        ("   uploads told 201 of sessions still active, checked in the database and the store "
         "after the sweep", "info", f"{after.checked_active} (and {after.erased_by_reset} "
         "erased by their session's reset)", None),
        ("11.6: files that reached `stored`, per session = uploads told 201 (no 503 that was "
         "stored anyway)", "0 sessions differ", f"{len(after.per_session_mismatches)}"
         + (f": {after.per_session_mismatches[:3]}" if after.per_session_mismatches else ""),
         not after.per_session_mismatches),
        ("11.6: every upload not told 201 was told `503 storage-unavailable`", "0 other answers",
         f"{sum(upload_errors.values()) - sum(unclear.values())} told 503 storage-unavailable, "
         f"{sum(unclear.values())} other" + (f" ({listed(unclear)})" if unclear else ""),
         not unclear),
        ("11.6: no 5xx but `503 storage-unavailable`", "0", str(sum(other_5xx.values()))
         + (f" ({listed(other_5xx)})" if other_5xx else ""), not other_5xx),
        ("11.6: no request left without an answer (timeout, dropped connection)", "0",
         str(sum(no_answer.values())) + (f" ({listed(no_answer)})" if no_answer else ""),
         not no_answer),
        ("   other operations (create, resume, message, download link, reset) unaffected",
         "0 errors", str(sum(elsewhere.values())) + (f" ({listed(elsewhere)})" if elsewhere
                                                     else ""), not elsewhere),
    ]
    return rows
