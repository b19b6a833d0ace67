"""Assistant backends: `retrieval` (offline default) and `openai` (any compatible endpoint)."""

from __future__ import annotations

from chat_app.services.assistant.base import Assistant, AssistantError, HistoryTurn
from chat_app.settings import Settings

__all__ = ["Assistant", "AssistantError", "HistoryTurn", "build_assistant"]


def build_assistant(settings: Settings) -> Assistant:
    """The backend CHAT_APP_ASSISTANT selects (`auto` = openai when it is configured)."""
    choice = settings.assistant
    if choice == "auto":
        configured = settings.openai_base_url or settings.openai_api_key
        choice = "openai" if configured else "retrieval"
    if choice == "openai":
        from chat_app.services.assistant.openai_chat import OpenAIAssistant

        return OpenAIAssistant(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            model=settings.openai_model,
        )
    from chat_app.services.assistant.retrieval import RetrievalAssistant

    return RetrievalAssistant()
