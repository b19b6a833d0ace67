"""The transcript export: a session's conversation and file list as one Markdown document."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from chat_app.services.assistant.retrieval import escape_markdown
from chat_app.services.files import FileView
from chat_app.services.sessions import SessionView

if TYPE_CHECKING:
    from chat_app.services.chat import MessageView

STATUS_NOTES = {"incomplete": " (stopped before the end)", "failed": " (failed)"}


def render_transcript(
    session: SessionView,
    messages: Sequence[MessageView],
    files: Sequence[FileView],
    *,
    exported_at: datetime,
) -> str:
    """Markdown: a heading, the files, then each message under its author and time."""
    lines = [
        "# Chat transcript",
        "",
        # Only the badge's short form: the full id is the session's key.
        f"Session `{session.uuid[:8]}` · exported {_moment(exported_at)}",
        "",
        "## Files",
        "",
    ]
    if files:
        lines += [f"- {escape_markdown(f.filename)} ({f.size_bytes:,} bytes)" for f in files]
    else:
        lines.append("No files.")
    lines += ["", "## Conversation", ""]
    if not messages:
        lines += ["No messages.", ""]
    for message in messages:
        author = "You" if message.role == "user" else "Assistant"
        note = STATUS_NOTES.get(message.status, "")
        lines += [f"### {author} · {_moment(message.created_at)}{note}", "", message.content, ""]
        if message.citations:
            sources = "; ".join(_source(c) for c in message.citations)
            lines += [f"Sources: {sources}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _source(citation: dict) -> str:
    name = escape_markdown(str(citation.get("filename", "")))
    return f"{name}, page {citation['page']}" if citation.get("page") else name


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
