"""Retrieval quality through the real path: upload the corpus, ask, read the saved citations.

Every question of tests/data/corpus_questions.json goes through `ChatService.begin_turn` and
`Reply.tokens()` with the offline RetrievalAssistant, on SQLite and PostgreSQL. Run with `-s` to
see the table.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from chat_app.container import Services, build_services
from chat_app.models import MESSAGE_COMPLETE, FileChunk
from chat_app.services.assistant.retrieval import INTRO, NO_FILES, RetrievalAssistant
from chat_app.services.chat import MessageView, Reply
from chat_app.services.files import FileView
from chat_app.services.uploads import begin_upload, upload_stream
from chat_app.storage.base import ObjectStore
from tests.aio import run_async
from tests.services.conftest import CTX, new_session
from tests.unit.test_file_rules import PNG

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = DATA / "corpus"
QUESTIONS: list[dict] = json.loads((DATA / "corpus_questions.json").read_text())
NO_MATCH_QUESTIONS: list[str] = json.loads((DATA / "corpus_no_match.json").read_text())
CORPUS_FILES = sorted(path.name for path in CORPUS.iterdir())
#: A hit is the expected source among the first TOP_CITATIONS citations of the saved reply.
TOP_CITATIONS = 3
# The measured hit rate is reported in the issue note; this floor catches a regression.
MIN_HIT_RATE = 0.9

pytestmark = pytest.mark.parametrize("store", ["local"], indirect=True)


@pytest.fixture
def chat_services(make_settings, store: ObjectStore) -> Services:
    """Services on the migrated database with the retrieval assistant, unpaced."""
    return build_services(make_settings(), store=store, assistant=RetrievalAssistant(pace_s=0))


def upload_corpus(services: Services, session_uuid: str) -> dict[str, FileView]:
    """Every corpus file, uploaded through the stream path into one session."""
    views = {}
    for name in CORPUS_FILES:
        with (CORPUS / name).open("rb") as stream:
            views[name] = upload_stream(services.files, session_uuid, name, stream, CTX)
    return views


def ask(services: Services, session_uuid: str, question: str) -> Reply:
    """One whole turn: save the question, stream the reply to its end (it is then saved)."""
    turn = services.chat.begin_turn(session_uuid, question, CTX)
    reply = services.chat.reply(turn)

    async def drain() -> None:
        async for _ in reply.tokens():
            pass

    run_async(drain)
    return reply


def saved(reply: Reply) -> MessageView:
    assert reply.message is not None, "the reply was not saved"
    assert reply.message.status == MESSAGE_COMPLETE
    return reply.message


@dataclass(frozen=True)
class Outcome:
    question: str
    expected: str
    cited: list[str]
    hit: bool


def source(citation: dict) -> str:
    page = citation.get("page")
    return f"{citation['filename']} p{page}" if page else citation["filename"]


def judge(case: dict, message: MessageView) -> Outcome:
    top = message.citations[:TOP_CITATIONS]
    hit = any(
        c["filename"] == case["file"] and (case["page"] is None or c["page"] == case["page"])
        for c in top
    )
    expected = source({"filename": case["file"], "page": case["page"]})
    return Outcome(case["question"], expected, [source(c) for c in top], hit)


def print_table(outcomes: list[Outcome], label: str) -> float:
    hits = sum(outcome.hit for outcome in outcomes)
    first = sum(bool(o.cited) and o.cited[0] == o.expected for o in outcomes)
    rate = hits / len(outcomes)
    print(f"\nretrieval quality ({label}): hit in the first {TOP_CITATIONS} citations "
          f"{hits}/{len(outcomes)} = {rate:.1%}; first citation {first}/{len(outcomes)}")
    print(f"{'':2} {'question':<58} {'expected':<30} first citations")
    for o in outcomes:
        mark = "ok" if o.hit else "--"
        print(f"{mark:2} {o.question[:58]:<58} {o.expected:<30} {'; '.join(o.cited) or '-'}")
    by_file: dict[str, list[bool]] = {}
    for o in outcomes:
        by_file.setdefault(o.expected.split(" p")[0], []).append(o.hit)
    for name, results in sorted(by_file.items()):
        print(f"   {name:<30} {sum(results)}/{len(results)}")
    return rate


def test_questions_are_answered_from_the_right_file_and_page(
    chat_services: Services, database_url: str
) -> None:
    session = new_session(chat_services)
    upload_corpus(chat_services, session.uuid)
    outcomes = []
    for case in QUESTIONS:
        message = saved(ask(chat_services, session.uuid, case["question"]))
        assert message.content.startswith(INTRO), case["question"]
        outcomes.append(judge(case, message))
    rate = print_table(outcomes, database_url.split(":")[0])
    assert len(outcomes) == 43
    assert rate >= MIN_HIT_RATE, [o.question for o in outcomes if not o.hit]


def test_the_reply_quotes_the_cited_passages(chat_services: Services) -> None:
    session = new_session(chat_services)
    upload_corpus(chat_services, session.uuid)
    reply = ask(chat_services, session.uuid, "What hours does the middle watch cover?")
    message = saved(reply)
    assert message.content == reply.text
    assert "> " in message.content and "midnight to 04:00" in message.content
    assert "— *handbook.pdf, page 1*" in message.content
    assert message.citations[0]["filename"] == "handbook.pdf"
    assert message.citations[0]["page"] == 1
    # Citations point at real files of the session, and each source is cited once.
    assert {c["file_id"] for c in message.citations} <= {
        f.id for f in chat_services.files.list_stored(session.id)}
    keys = [(c["file_id"], c["page"]) for c in message.citations]
    assert len(keys) == len(set(keys))


def test_unrelated_questions_get_no_citations_and_the_no_match_answer(
    chat_services: Services,
) -> None:
    session = new_session(chat_services)
    upload_corpus(chat_services, session.uuid)
    assert len(NO_MATCH_QUESTIONS) == 5
    for question in NO_MATCH_QUESTIONS:
        message = saved(ask(chat_services, session.uuid, question))
        assert message.citations == [], question
        assert message.content.startswith("I found nothing about that in your files")
        assert "will not guess" in message.content
        # The files are named, in upload order (the reply is deterministic).
        named = ", ".join(name.replace("_", "\\_") for name in CORPUS_FILES)
        assert f"({named})" in message.content
        assert "\n>" not in message.content


def test_a_session_without_files_gets_the_no_files_answer(chat_services: Services) -> None:
    session = new_session(chat_services)
    for question in [QUESTIONS[0]["question"], NO_MATCH_QUESTIONS[0], "hello"]:
        message = saved(ask(chat_services, session.uuid, question))
        assert message.content == NO_FILES
        assert message.citations == []


def test_other_sessions_files_are_never_cited(chat_services: Services) -> None:
    owner, stranger = new_session(chat_services), new_session(chat_services)
    upload_corpus(chat_services, owner.uuid)
    message = saved(ask(chat_services, stranger.uuid, QUESTIONS[0]["question"]))
    assert message.content == NO_FILES and message.citations == []


def test_pdf_passages_carry_their_page_numbers(chat_services: Services) -> None:
    session = new_session(chat_services)
    view = upload_corpus(chat_services, session.uuid)["handbook.pdf"]
    with Session(chat_services.engine) as db:
        chunks = db.exec(
            select(FileChunk).where(FileChunk.file_id == view.id).order_by(col(FileChunk.ordinal))
        ).all()
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert sorted({chunk.page for chunk in chunks}) == [1, 2, 3, 4, 5]
    for chunk in chunks:
        headings = [n for n in range(1, 6) if f"Page {n}:" in chunk.text]
        assert headings in ([], [chunk.page])
    assert any("Agnes Tulloch" in c.text and c.page == 1 for c in chunks)
    # ... and the saved citation of a page-4 answer names page 4.
    message = saved(ask(chat_services, session.uuid, QUESTIONS[38]["question"]))
    assert QUESTIONS[38]["page"] == 4
    assert (message.citations[0]["filename"], message.citations[0]["page"]) == ("handbook.pdf", 4)


@pytest.mark.parametrize(
    ("filename", "data", "passages"),
    [
        ("notes.md", b"# Notes\n\nThe kettle is in the second cupboard.\n", 1),
        ("photo.png", PNG, None),
        ("broken.pdf", (CORPUS / "handbook.pdf").read_bytes()[:2_000], 0),
        ("empty-ish.txt", b" \n\n \n", 0),
    ],
)
def test_upload_counts_the_passages_it_indexed(
    chat_services: Services, filename: str, data: bytes, passages: int | None
) -> None:
    session = new_session(chat_services)
    upload = begin_upload(chat_services.files, session.uuid, filename, CTX)
    upload.feed(data)
    view = upload.finish()
    assert upload.passages == passages
    with Session(chat_services.engine) as db:
        rows = db.exec(select(FileChunk).where(FileChunk.file_id == view.id)).all()
    assert len(rows) == (passages or 0)
    # The file is stored (and listed) whether or not its text could be read.
    assert [f.id for f in chat_services.files.list_stored(session.id)] == [view.id]


def test_a_file_uploaded_later_is_searched_at_once(chat_services: Services) -> None:
    session = new_session(chat_services)
    upload_stream(chat_services.files, session.uuid, "a.txt",
                  io.BytesIO(b"The kettle is in the second cupboard.\n"), CTX)
    first = saved(ask(chat_services, session.uuid, "Where is the lighthouse fog horn?"))
    assert first.citations == []  # indexed (and cached) without the handbook
    view = upload_corpus(chat_services, session.uuid)["handbook.pdf"]
    second = saved(ask(chat_services, session.uuid, "When do keepers switch on the fog horn?"))
    assert second.citations[0]["file_id"] == view.id
