"""Direct checks of SPEC section 11's invariants, for tests to call after any operation.

2. No row in `session_files` with status `stored` lacks its object.
3. After a sweep, no object older than the grace period belongs to a non-active session or to no
   (`pending`/`stored`) row.
4. Every state change has its audit row: no session without `session.created`, no reset without
   its successor and `session.reset`, no file that reached `stored` without `file.uploaded`.

All read the database and the store themselves; none trusts a report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from chat_app.models import (
    FILE_PENDING,
    FILE_STORED,
    SESSION_ACTIVE,
    SessionFile,
    UserSession,
)
from chat_app.storage.base import ObjectStore

KEY_PREFIX = "sessions/"
LIVE_FILE_STATUSES = (FILE_PENDING, FILE_STORED)


def stored_rows_without_objects(
    engine: Engine, store: ObjectStore, *, session_uuids: Iterable[str] | None = None
) -> list[str]:
    """Keys of `stored` rows (of these sessions, or of all) whose object is not in `store`."""
    query = select(SessionFile.object_key).where(SessionFile.status == FILE_STORED)
    if session_uuids is not None:
        query = query.join(UserSession, col(UserSession.id) == col(SessionFile.session_id)).where(
            col(UserSession.uuid).in_(list(session_uuids))
        )
    with Session(engine) as db:
        keys = list(db.exec(query).all())
    return [key for key in keys if not store.exists(key)]


def assert_stored_rows_have_objects(
    engine: Engine, store: ObjectStore, *, session_uuids: Iterable[str] | None = None
) -> None:
    """Invariant 2. Pass `session_uuids` when the database also holds other tests' rows."""
    missing = stored_rows_without_objects(engine, store, session_uuids=session_uuids)
    assert missing == [], f"invariant 2: `stored` rows without their object: {missing}"


def stale_orphans(engine: Engine, store: ObjectStore, *, older_than: datetime) -> list[str]:
    """Keys under sessions/ older than `older_than` that no live row of an active session owns."""
    old = [obj.key for obj in store.iter_keys(KEY_PREFIX) if obj.modified < older_than]
    if not old:
        return []
    with Session(engine) as db:
        # Small test stores: one query per key keeps this obviously right rather than fast.
        live = set()
        for key in old:
            row = db.exec(
                select(SessionFile.object_key)
                .join(UserSession, col(UserSession.id) == col(SessionFile.session_id))
                .where(
                    SessionFile.object_key == key,
                    col(SessionFile.status).in_(LIVE_FILE_STATUSES),
                    UserSession.status == SESSION_ACTIVE,
                    # The key must be the one the protocol gives the row, session uuid included.
                    col(SessionFile.object_key)
                    == KEY_PREFIX + UserSession.uuid + "/" + SessionFile.id,
                )
            ).first()
            if row is not None:
                live.add(key)
    return [key for key in old if key not in live]


def assert_no_stale_orphans(engine: Engine, store: ObjectStore, *, older_than: datetime) -> None:
    """Invariant 3, for the cutoff the sweep used (its clock minus the grace period)."""
    orphans = stale_orphans(engine, store, older_than=older_than)
    assert orphans == [], f"invariant 3: {len(orphans)} stale orphans survived: {orphans[:10]}"


def assert_storage_invariants(
    engine: Engine,
    store: ObjectStore,
    *,
    older_than: datetime,
    session_uuids: Iterable[str] | None = None,
) -> None:
    """Invariants 2 and 3 together (call right after a sweep)."""
    assert_stored_rows_have_objects(engine, store, session_uuids=session_uuids)
    assert_no_stale_orphans(engine, store, older_than=older_than)


#: Each query lists the ids of sessions some change left half-done (invariants 4 and 5).
_HALF_DONE_SESSIONS = {
    "a session without its `session.created` audit row": """
        SELECT s.id FROM user_sessions s WHERE NOT EXISTS (
            SELECT 1 FROM audit_log a WHERE a.session_id = s.id AND a.event = 'session.created')
    """,
    "a reset session without exactly one successor": """
        SELECT s.id FROM user_sessions s WHERE s.status = 'reset' AND (
            SELECT count(*) FROM user_sessions n WHERE n.predecessor_id = s.id) <> 1
    """,
    "a reset session without its `session.reset` audit row": """
        SELECT s.id FROM user_sessions s WHERE s.status = 'reset' AND NOT EXISTS (
            SELECT 1 FROM audit_log a WHERE a.session_id = s.id AND a.event = 'session.reset')
    """,
    "a successor whose predecessor was not reset": """
        SELECT n.id FROM user_sessions n JOIN user_sessions s ON s.id = n.predecessor_id
        WHERE s.status <> 'reset'
    """,
    "an expired session without its `session.expired` audit row": """
        SELECT s.id FROM user_sessions s WHERE s.status = 'expired' AND NOT EXISTS (
            SELECT 1 FROM audit_log a WHERE a.session_id = s.id AND a.event = 'session.expired')
    """,
    "files that reached `stored` without as many `file.uploaded` audit rows": """
        SELECT s.id FROM user_sessions s WHERE (
            SELECT count(*) FROM session_files f
            WHERE f.session_id = s.id AND f.status IN ('stored', 'deleting', 'deleted')
        ) <> (
            SELECT count(*) FROM audit_log a
            WHERE a.session_id = s.id AND a.event = 'file.uploaded')
    """,
}


def half_done_sessions(engine: Engine) -> dict[str, list[int]]:
    """Session ids that break invariant 4 or 5, by what is wrong with them (every session)."""
    found: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for problem, query in _HALF_DONE_SESSIONS.items():
            ids = list(conn.execute(sa.text(query)).scalars())
            if ids:
                found[problem] = ids
    return found


def assert_no_half_done_sessions(engine: Engine) -> None:
    """Invariants 4 and 5 over every session in the database: each change whole, or absent."""
    found = half_done_sessions(engine)
    assert found == {}, f"half-done changes: {found}"
