"""BM25 ranking of a session's passages (`bm25s`), with a small per-session index cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import bm25s
import Stemmer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from chat_app.db import unit_of_work
from chat_app.models import FILE_STORED, FileChunk, SessionFile

#: Indexes kept in memory; a miss costs one rebuild (~40 ms per 1,000 passages).
CACHE_SESSIONS = 64
#: Passages scoring below this share of the best one add noise, not evidence.
RELATIVE_FLOOR = 0.25


@dataclass(frozen=True)
class Passage:
    """A ranked passage of one of the session's files."""

    file_id: str
    filename: str
    page: int | None
    ordinal: int
    text: str
    score: float = 0.0

    @property
    def label(self) -> str:
        """`handbook.pdf, page 3` or `notes.md`."""
        return f"{self.filename}, page {self.page}" if self.page else self.filename

    def citation(self) -> dict[str, Any]:
        """What a message stores about its source (no passage text: that lives in the file)."""
        return {"file_id": self.file_id, "filename": self.filename, "page": self.page}


@dataclass(frozen=True)
class SearchResult:
    """The best passages for a question, and the session's files that were searched."""

    passages: list[Passage]
    files: list[str]


@dataclass
class _Index:
    signature: tuple[str, ...]
    passages: list[Passage]
    files: list[str]
    model: bm25s.BM25 | None


class Retriever:
    """Ranks the passages of a session's stored files against a question."""

    def __init__(self, engine: Engine, *, cache_sessions: int = CACHE_SESSIONS) -> None:
        self._engine = engine
        # PyStemmer instances keep state between calls and must not be shared across threads
        # (its docs say so); searches run in worker threads, so each thread gets its own.
        self._local = threading.local()
        self._cache: OrderedDict[int, _Index] = OrderedDict()
        self._cache_sessions = cache_sessions
        self._lock = threading.Lock()

    def search(
        self,
        session_id: int,
        question: str,
        *,
        k: int = 3,
        signature: tuple[str, ...] | None = None,
    ) -> SearchResult:
        """The top `k` passages that share words with `question` (none when nothing matches).

        `signature`: the session's stored files as `signature` read them, when the caller has
        just read them in its own transaction (saves a connection checkout per turn).
        """
        index = self._index(session_id, signature)
        if index.model is None:
            return SearchResult([], index.files)
        terms = [
            term
            for term in self._tokenize([question])[0]
            if term in index.model.vocab_dict
        ]
        if not terms:
            return SearchResult([], index.files)
        with self._lock:  # bm25s keeps scratch state on the model
            ids, scores = index.model.retrieve(
                [terms], k=min(k, len(index.passages)), show_progress=False, n_threads=1
            )
        ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]
        if not ranked:
            return SearchResult([], index.files)
        floor = ranked[0][1] * RELATIVE_FLOOR
        passages = [
            _with_score(index.passages[i], score) for i, score in ranked if score >= floor
        ]
        return SearchResult(passages, index.files)

    def forget(self, session_id: int) -> None:
        """Drop a session's cached index (its files changed or it ended)."""
        with self._lock:
            self._cache.pop(session_id, None)

    # --- index ---------------------------------------------------------------------------------

    @staticmethod
    def signature(db: Session, session_id: int) -> tuple[str, ...]:
        """The ids of the session's stored files, in upload order: what its index is built from."""
        return tuple(db.exec(
            select(SessionFile.id)
            .where(SessionFile.session_id == session_id, SessionFile.status == FILE_STORED)
            .order_by(col(SessionFile.created_at), col(SessionFile.id))
        ).all())

    def _index(self, session_id: int, signature: tuple[str, ...] | None = None) -> _Index:
        if signature is not None and (cached := self._cached(session_id, signature)):
            return cached
        # unit_of_work, like every service: a lost database is a 503 here too, not a 500.
        with unit_of_work(self._engine) as db:
            if signature is None:
                signature = self.signature(db, session_id)
                if cached := self._cached(session_id, signature):
                    return cached
            index = self._build(db, session_id, signature)
        with self._lock:
            self._cache[session_id] = index
            self._cache.move_to_end(session_id)
            while len(self._cache) > self._cache_sessions:
                self._cache.popitem(last=False)
        return index

    def _cached(self, session_id: int, signature: tuple[str, ...]) -> _Index | None:
        """The cached index when it was built from exactly these files."""
        with self._lock:
            cached = self._cache.get(session_id)
            if cached is None or cached.signature != signature:
                return None
            self._cache.move_to_end(session_id)
            return cached

    def _build(self, db: Session, session_id: int, signature: tuple[str, ...]) -> _Index:
        rows = db.exec(
            select(FileChunk, SessionFile.filename)
            .join(SessionFile, col(SessionFile.id) == col(FileChunk.file_id))
            .where(col(SessionFile.id).in_(signature))
            .order_by(col(SessionFile.created_at), col(SessionFile.id), col(FileChunk.ordinal))
        ).all() if signature else []
        # In upload order, like the passages: the reply names the files, and must not vary.
        files = list(dict.fromkeys(
            db.exec(
                select(SessionFile.filename).where(col(SessionFile.id).in_(signature))
                .order_by(col(SessionFile.created_at), col(SessionFile.id))
            ).all()
        )) if signature else []
        passages = [
            Passage(chunk.file_id, filename, chunk.page, chunk.ordinal, chunk.text)
            for chunk, filename in rows
        ]
        corpus = self._tokenize([p.text for p in passages])
        if not any(corpus):
            # No passage has a single term (only stopwords, punctuation...): bm25s refuses to
            # index such a corpus, and no question could match it anyway.
            return _Index(signature, passages, files, None)
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return _Index(signature, passages, files, model)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = Stemmer.Stemmer("english")
        return bm25s.tokenize(
            texts, stopwords="en_plus", stemmer=stemmer, return_ids=False, show_progress=False
        )


def _with_score(passage: Passage, score: float) -> Passage:
    return Passage(passage.file_id, passage.filename, passage.page, passage.ordinal,
                   passage.text, score)
