"""The REST API (SPEC section 8): FastAPI routes under /api/v1 over the shared services."""

from chat_app.api.app import create_api

__all__ = ["create_api"]
