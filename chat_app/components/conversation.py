"""The conversation: the message list (the `log`) and the composer."""

from __future__ import annotations

import reflex as rx

from chat_app.components.files_panel import attach_button, upload_progress
from chat_app.components.lazy_markdown import LazyMarkdown
from chat_app.state.chat import COMPOSER_ID, ChatState

#: Placeholder shown in the composer; the limit is enforced by the server, with a toast.
COMPOSER_HINT = "Ask about your files… (Enter sends, Shift+Enter adds a line)"


def safe_markdown(text: rx.Var) -> rx.Component:
    """Markdown without raw HTML: `<script>` or `<img onerror>` in a message shows as text.

    The renderer loads on demand (LazyMarkdown), so a page without messages doesn't pay for it.
    """
    return LazyMarkdown.create(
        source=text, class_name="message-body",
        style={"& blockquote": {"border_left": "3px solid var(--accent-8)",
                                "padding_left": "0.75em", "margin": "0.5em 0"}},
    )


def _author(message: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.text(rx.cond(message["role"] == "user", "You", "Assistant"), size="1",
                weight="bold"),
        rx.text(message["time"], size="1", color_scheme="gray"),
        rx.cond(
            message["status_label"] != "",
            rx.badge(message["status_label"], size="1", variant="soft",
                     color_scheme=rx.cond(message["status"] == "failed", "red", "amber")),
        ),
        spacing="2",
        align="center",
    )


def _bubble(*children: rx.Component, role: rx.Var | str, **props) -> rx.Component:
    is_user = role == "user"
    return rx.el.article(
        *children,
        data_role=role,
        padding_x="4",
        padding_y="2",
        border_radius="12px",
        max_width="min(44rem, 92%)",
        align_self=rx.cond(is_user, "flex-end", "flex-start"),
        background=rx.cond(is_user, "var(--accent-a3)", "var(--gray-a3)"),
        overflow_wrap="anywhere",
        **props,
    )


def _message(message: rx.Var) -> rx.Component:
    return _bubble(
        _author(message),
        safe_markdown(message["content"]),
        rx.cond(
            message["sources"] != "",
            rx.text("Sources: ", message["sources"], size="1", color_scheme="gray"),
        ),
        role=message["role"],
        data_status=message["status"],
    )


def _pending_message() -> rx.Component:
    return _bubble(
        rx.hstack(rx.text("You", size="1", weight="bold"), spacing="2", align="center"),
        safe_markdown(ChatState.pending_text),
        role="user",
        data_status="complete",
    )


def _streaming_reply() -> rx.Component:
    return _bubble(
        rx.hstack(
            rx.text("Assistant", size="1", weight="bold"),
            rx.spinner(size="1"),
            rx.text("replying…", size="1", color_scheme="gray"),
            spacing="2",
            align="center",
        ),
        safe_markdown(ChatState.reply_text),
        role="assistant",
        data_status="streaming",
        aria_busy="true",
    )


def _empty_state() -> rx.Component:
    return rx.vstack(
        rx.icon("message-circle", size=32, color="var(--gray-9)", aria_hidden="true"),
        rx.text("This is your private session.", weight="medium"),
        rx.text(
            "It lives in this browser only and resumes when you come back. Attach a txt, md, "
            "csv, json or pdf file and ask about it: the assistant quotes the passages that "
            "answer, with file name and page. “New session” erases everything.",
            size="2",
            color_scheme="gray",
            text_align="center",
            max_width="32rem",
        ),
        align="center",
        spacing="2",
        padding="6",
        margin="auto",
    )


def message_list() -> rx.Component:
    """The `log` named "Conversation"; it keeps the newest message in view."""
    return rx.auto_scroll(
        rx.cond(
            (ChatState.messages.length() > 0) | ChatState.show_reply,
            rx.fragment(
                rx.foreach(ChatState.messages, _message),
                rx.cond(
                    ChatState.show_reply,
                    rx.fragment(
                        rx.cond(ChatState.pending_text != "", _pending_message()),
                        _streaming_reply(),
                    ),
                ),
            ),
            _empty_state(),
        ),
        role="log",
        aria_label="Conversation",
        aria_live="polite",
        display="flex",
        flex_direction="column",
        gap="12px",
        flex="1",
        min_height="16rem",
        overflow_y="auto",
        width="100%",
        padding_y="2",
        padding_x="1",
    )


def composer(max_bytes: int, max_files: int) -> rx.Component:
    """Message box, Send or Stop, and Attach files with per-file progress."""
    return rx.form(
        rx.vstack(
            rx.text_area(
                id=COMPOSER_ID,
                name="message",
                placeholder=COMPOSER_HINT,
                aria_label="Message",
                enter_key_submit=True,
                auto_height=True,
                rows="2",
                max_height="40vh",
                width="100%",
                resize="vertical",
            ),
            rx.hstack(
                attach_button(max_bytes, max_files),
                rx.spacer(),
                rx.cond(
                    ChatState.show_reply,
                    rx.button(rx.icon("square", size=14, aria_hidden="true"), "Stop",
                              type="button", color_scheme="red", variant="soft",
                              on_click=ChatState.stop_reply),
                    rx.button(rx.icon("send-horizontal", size=14, aria_hidden="true"), "Send",
                              type="submit"),
                ),
                width="100%",
                align="center",
            ),
            upload_progress(),
            spacing="2",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=False,
        width="100%",
    )


def conversation(max_bytes: int, max_files: int) -> rx.Component:
    """The main column: messages above, composer below."""
    return rx.card(
        rx.vstack(
            message_list(),
            composer(max_bytes, max_files),
            spacing="3",
            width="100%",
            height="100%",
        ),
        width="100%",
        flex="1",
        # On wide screens the log scrolls inside the viewport and the composer stays in view.
        height=rx.breakpoints(initial="auto", lg="calc(100vh - 7rem)"),
        min_height="24rem",
    )
