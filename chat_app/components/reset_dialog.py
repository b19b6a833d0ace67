"""The reset confirmation: says exactly what will be erased before anything is."""

from __future__ import annotations

import reflex as rx

from chat_app.state.session import SessionState


def reset_dialog() -> rx.Component:
    """The `alertdialog` titled "Start a new session?".

    Returns:
        The dialog component, controlled by SessionState.reset_dialog_open.
    """
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Start a new session?"),
            rx.alert_dialog.description(
                "This permanently erases ",
                rx.text.strong(SessionState.erase_messages, " messages"),
                " and ",
                rx.text.strong(
                    SessionState.erase_files, " files (", SessionState.erase_size, ")"
                ),
                " from this session, in every tab of this browser. It cannot be undone.",
                data_testid="reset-summary",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.alert_dialog.action(
                    rx.button(
                        "Erase and start new",
                        color_scheme="red",
                        on_click=SessionState.confirm_reset,
                    )
                ),
                justify="end",
                spacing="3",
                margin_top="4",
            ),
        ),
        open=SessionState.reset_dialog_open,
        on_open_change=SessionState.set_reset_dialog_open,
    )
