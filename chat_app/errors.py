"""Error types per layer (STYLE 11): services and storage raise them, only edges translate them."""

from __future__ import annotations

import http


class AppError(Exception):
    """Root of every error the app expects; carries its HTTP status and a problem type slug."""

    status: int = 500
    type_slug: str = "internal-error"
    #: "warning" errors are the user's to fix; "error" ones are ours or a dependency's.
    toast_level: str = "error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)

    @property
    def title(self) -> str:
        """The short, fixed summary of this kind of error."""
        return http.HTTPStatus(self.status).phrase


class InvalidInput(AppError):
    status, type_slug, toast_level = 422, "invalid-input", "warning"


class MalformedSessionId(InvalidInput):
    status, type_slug = 400, "malformed-session-id"

    def __init__(self) -> None:
        # Never echo the bad value: it may be an attacker's payload or someone's secret.
        super().__init__("The session id is not a valid session id.")


class NotFound(AppError):
    status, type_slug, toast_level = 404, "not-found", "warning"


class SessionNotFound(NotFound):
    type_slug = "session-not-found"

    def __init__(self, reason: str = "unknown") -> None:
        # One body for unknown, ended and expired ids; `reason` is for logs and audit only.
        self.reason = reason
        super().__init__("No active session has this id. Create a new session.")


class Conflict(AppError):
    status, type_slug, toast_level = 409, "conflict", "warning"


class ResetConflict(Conflict):
    type_slug = "session-already-ended"

    def __init__(self) -> None:
        super().__init__("This session was already ended by another request.")


class PermissionDenied(AppError):
    status, type_slug = 403, "permission-denied"


class DevControlsDisabled(PermissionDenied):
    type_slug = "dev-controls-disabled"

    def __init__(self) -> None:
        super().__init__("Developer controls are disabled on this server.")


class RateLimited(AppError):
    status, type_slug, toast_level = 429, "rate-limited", "warning"

    def __init__(self, *, name: str, retry_after_s: int, limit: int, window_s: int) -> None:
        self.name = name
        self.retry_after_s = retry_after_s
        self.limit = limit
        self.window_s = window_s
        super().__init__(f"Too many requests. Try again in {retry_after_s} s.")


class ServiceUnavailable(AppError):
    status, type_slug = 503, "service-unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    type_slug = "database-unavailable"

    def __init__(self) -> None:
        super().__init__("The database is unavailable. Try again in a moment.")


class RateLimitStoreUnavailable(ServiceUnavailable):
    type_slug = "rate-limit-store-unavailable"

    def __init__(self) -> None:
        super().__init__("The rate-limit store is unavailable. Try again in a moment.")
