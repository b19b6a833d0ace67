"""Direct checks of SPEC section 11's storage invariants, for tests to call after any operation.

2. No row in `session_files` with status `stored` lacks its object.
3. After a sweep, no object older than the grace period belongs to a non-active session or to no
   (`pending`/`stored`) row.

Both read the database and the store themselves; neither trusts a report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

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
