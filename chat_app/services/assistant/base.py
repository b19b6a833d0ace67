"""The one interface every assistant backend implements (SPEC section 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from chat_app.services.retrieval import Passage


@dataclass(frozen=True)
class HistoryTurn:
    """One earlier message as the assistant sees it; the last one is the question."""

    role: str
    content: str


class AssistantError(Exception):
    """The reply could not be produced; `detail` says why in words for the user."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Assistant(Protocol):
    """Streams a reply to the last turn of `history`, grounded in `passages`."""

    name: str

    def stream_reply(
        self,
        history: Sequence[HistoryTurn],
        passages: Sequence[Passage],
        *,
        files: Sequence[str] = (),
    ) -> AsyncIterator[str]:
        """Yield the reply piece by piece; raise AssistantError when it cannot go on.

        `files` names the session's searchable files, so a backend can tell "no files"
        from "nothing relevant in them".
        """
        ...
