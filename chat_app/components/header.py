"""The page header: app name, session badge, New session, colour-mode toggle."""

from __future__ import annotations

import reflex as rx

from chat_app.state.chat import ChatState
from chat_app.state.session import SessionState


def session_badge() -> rx.Component:
    """The `status` named "Session": short id, status and expiry date.

    Returns:
        The badge component.
    """
    details = SessionState.session_details
    return rx.hstack(
        rx.icon("fingerprint", size=16, aria_hidden="true"),
        rx.cond(
            details["short"] != "",
            rx.hstack(
                rx.code(details["short"], data_testid="session-short-id"),
                rx.badge(details["status"], color_scheme="green", variant="soft"),
                rx.text("expires ", details["expires"], size="1", color_scheme="gray"),
                spacing="2",
                align="center",
            ),
            rx.text("Starting session…", size="1", color_scheme="gray"),
        ),
        role="status",
        aria_label="Session",
        aria_live="polite",
        spacing="2",
        align="center",
        padding_x="3",
        padding_y="1",
        border_radius="full",
        border="1px solid var(--gray-a6)",
    )


def color_mode_toggle() -> rx.Component:
    """Light/dark switch with an accessible name.

    Returns:
        The toggle button.
    """
    return rx.icon_button(
        rx.color_mode_cond(light=rx.icon("moon", size=18), dark=rx.icon("sun", size=18)),
        on_click=rx.toggle_color_mode,
        variant="ghost",
        aria_label="Toggle light and dark mode",
        title="Toggle light and dark mode",
    )


def header() -> rx.Component:
    """The top bar.

    Returns:
        The header component.
    """
    return rx.hstack(
        rx.hstack(
            rx.icon("messages-square", size=22, aria_hidden="true"),
            rx.heading("chat_app", size="5", as_="h1"),
            align="center",
            spacing="2",
        ),
        rx.spacer(),
        session_badge(),
        rx.button(
            rx.icon("rotate-ccw", size=16, aria_hidden="true"),
            "New session",
            on_click=SessionState.open_reset_dialog,
            variant="soft",
        ),
        rx.icon_button(
            rx.icon("file-down", size=18),
            on_click=ChatState.download_transcript,
            variant="ghost",
            aria_label="Download transcript",
            title="Download transcript (Markdown)",
        ),
        color_mode_toggle(),
        as_="header",
        width="100%",
        box_sizing="border-box",
        align="center",
        spacing="3",
        padding_y="3",
        padding_x="5",
        border_bottom="1px solid var(--gray-a5)",
        wrap="wrap",
    )
