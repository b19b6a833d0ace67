"""The developer controls region (only compiled in with CHAT_APP_DEV_CONTROLS=1)."""

from __future__ import annotations

import reflex as rx

from chat_app.state.dev import DevState
from chat_app.state.session import SessionState


def _field(label: str, value: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.text(label, size="1", color_scheme="gray", width="6em"),
        rx.code(value, size="1"),
        spacing="2",
        align="center",
    )


def _audit_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["at"]),
        rx.table.cell(row["event"]),
        rx.table.cell(row["actor"]),
        rx.table.cell(rx.code(row["details"], size="1")),
    )


def dev_panel() -> rx.Component:
    """The `region` "Developer controls": full id, timestamps, forced transitions, audit tail.

    Returns:
        The panel component.
    """
    details = SessionState.session_details
    return rx.card(
        rx.vstack(
            rx.heading("Developer controls", size="3", as_="h2", id="dev-controls-title"),
            rx.hstack(
                _field("Session id", details["full"]),
                rx.icon_button(
                    rx.icon("copy", size=14),
                    on_click=rx.set_clipboard(details["full"]),
                    size="1",
                    variant="ghost",
                    aria_label="Copy session id",
                ),
                align="center",
            ),
            _field("Status", details["status"]),
            _field("Created", details["created"]),
            _field("Last seen", details["last_seen"]),
            _field("Expires", details["expires"]),
            rx.hstack(
                rx.button("Validate now", on_click=DevState.validate_now, size="1"),
                rx.button("Reset now", on_click=DevState.reset_now, size="1"),
                rx.button("Expire now", on_click=DevState.expire_now, size="1"),
                rx.button("Corrupt stored id", on_click=DevState.corrupt_stored_id, size="1"),
                rx.button("Sweep (dry run)", on_click=DevState.sweep(True), size="1",
                          loading=DevState.sweeping),
                rx.button("Sweep now", on_click=DevState.sweep(False), size="1",
                          color_scheme="red", loading=DevState.sweeping),
                rx.button("Refresh audit", on_click=DevState.refresh_audit, size="1",
                          variant="soft"),
                wrap="wrap",
                spacing="2",
            ),
            rx.cond(
                DevState.sweep_report != "",
                rx.el.pre(DevState.sweep_report, aria_label="Sweep report", font_size="12px",
                          white_space="pre-wrap"),
            ),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("At"),
                        rx.table.column_header_cell("Event"),
                        rx.table.column_header_cell("Actor"),
                        rx.table.column_header_cell("Details"),
                    )
                ),
                rx.table.body(rx.foreach(DevState.audit_rows, _audit_row)),
                size="1",
                aria_label="Last audit events",
            ),
            spacing="2",
            width="100%",
        ),
        role="region",
        aria_labelledby="dev-controls-title",
        width="100%",
    )
