"""The conversation area."""

from __future__ import annotations

import reflex as rx


def conversation() -> rx.Component:
    """The `log` named "Conversation", with its empty-state hint.

    Returns:
        The conversation component.
    """
    return rx.box(
        rx.vstack(
            rx.icon("message-circle", size=32, color="var(--gray-9)", aria_hidden="true"),
            rx.text("This is your private session.", weight="medium"),
            rx.text(
                "It lives in this browser only and resumes when you come back. "
                "“New session” erases it and starts over.",
                size="2",
                color_scheme="gray",
                text_align="center",
            ),
            align="center",
            spacing="2",
            padding="6",
        ),
        role="log",
        aria_label="Conversation",
        aria_live="polite",
        flex="1",
        width="100%",
        overflow_y="auto",
    )
