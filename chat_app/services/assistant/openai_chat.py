"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp), streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import openai

from chat_app.services.assistant.base import AssistantError, HistoryTurn
from chat_app.services.retrieval import Passage

#: Earlier turns sent along; older ones rarely help and cost tokens.
HISTORY_TURNS = 20
CONNECT_TIMEOUT_S = 5.0
#: Longest silence between two streamed pieces before the reply is given up.
READ_TIMEOUT_S = 30.0
SYSTEM_PROMPT = (
    "You are the assistant of a private chat session. Answer concisely in Markdown. "
    "When passages from the user's files are given below, ground your answer in them and "
    "cite them as (file name, page). If they do not contain the answer, say so."
)


class OpenAIAssistant:
    """Streams from `base_url` with the `openai` SDK; errors become AssistantError."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        read_timeout_s: float = READ_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._model = model
        self._read_timeout_s = read_timeout_s
        self._base_url = base_url
        # Local servers (Ollama, llama.cpp) take no key, but the SDK insists on one.
        self._api_key = api_key or "no-key"
        self._timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)

    def _new_client(self) -> openai.AsyncOpenAI:
        # One client per reply: an httpx client's pooled connections belong to the event loop
        # that opened them, and a reply may run on another loop than the previous one (a worker
        # thread's loop, each TestClient request); reusing them fails with "Event loop is closed".
        return openai.AsyncOpenAI(
            base_url=self._base_url,
            api_key=self._api_key,
            timeout=self._timeout,
            # A retry would restart a reply the user is already reading.
            max_retries=0,
        )

    async def stream_reply(
        self,
        history: Sequence[HistoryTurn],
        passages: Sequence[Passage],
        *,
        files: Sequence[str] = (),
    ) -> AsyncIterator[str]:
        """Yield the provider's content deltas as they arrive."""
        started = False
        try:
            # Both closed on every exit, also when the consumer stops early (aclose): the
            # provider then stops generating and the connection is not left to the GC.
            async with self._new_client() as client:
                stream = await client.chat.completions.create(
                    model=self._model, messages=build_messages(history, passages), stream=True
                )
                async with stream:
                    async for chunk in stream:
                        if chunk.choices and (piece := chunk.choices[0].delta.content):
                            started = True
                            yield piece
        except AssistantError:
            raise
        except Exception as exc:
            raise AssistantError(self._explain(exc, started=started)) from exc

    def _explain(self, exc: Exception, *, started: bool) -> str:
        if isinstance(exc, openai.AuthenticationError):
            return ("The assistant service refused the API key (401). "
                    "Check OPENAI_API_KEY and send again.")
        if isinstance(exc, openai.PermissionDeniedError):
            return "The assistant service denied access to this model (403). Check the model name."
        if isinstance(exc, openai.RateLimitError):
            return ("The assistant service is rate limiting us (429). "
                    "Wait a minute, then send again.")
        if isinstance(exc, openai.NotFoundError):
            return ("The assistant service does not know this model (404). "
                    "Check CHAT_APP_OPENAI_MODEL.")
        if isinstance(exc, openai.APITimeoutError) and started:
            return (f"The assistant service stopped answering for {self._read_timeout_s:g} s "
                    "before the reply was complete. What arrived is kept.")
        if isinstance(exc, openai.APITimeoutError):
            return (f"The assistant service did not answer within {self._read_timeout_s:g} s. "
                    "Try again in a moment.")
        if isinstance(exc, openai.APIStatusError):
            return (f"The assistant service failed ({exc.status_code}). "
                    "Try again in a moment.")
        if started:
            # The SDK reports a cut stream as a connection error, like an unreachable host.
            return ("The connection to the assistant service dropped before the reply was "
                    "complete. What arrived is kept.")
        if isinstance(exc, openai.APIConnectionError):
            return "The assistant service could not be reached. Check OPENAI_BASE_URL."
        return "The assistant service sent a reply we could not read. Try again in a moment."


def build_messages(
    history: Sequence[HistoryTurn], passages: Sequence[Passage]
) -> list[dict[str, str]]:
    """The chat-completions `messages`: instructions, the passages, then the conversation."""
    system = SYSTEM_PROMPT
    if passages:
        context = "\n\n".join(f"[{p.label}]\n{p.text}" for p in passages)
        system = f"{SYSTEM_PROMPT}\n\nPassages from the user's files:\n\n{context}"
    turns = [
        {"role": turn.role, "content": turn.content}
        for turn in history[-HISTORY_TURNS:]
        if turn.role in {"user", "assistant"} and turn.content
    ]
    return [{"role": "system", "content": system}, *turns]
