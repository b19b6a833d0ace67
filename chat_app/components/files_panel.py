"""The "Files" region: attach (uploads start at once), per-file progress, download, delete."""

from __future__ import annotations

import reflex as rx

from chat_app.state.files import UPLOAD_ID, FilesState


def attach_button(max_bytes: int, max_files: int) -> rx.Component:
    """The "Attach files" picker; the browser's limits are a courtesy, the server enforces.

    Args:
        max_bytes: Per-file size limit.
        max_files: Files per session.

    Returns:
        The upload component wrapping the button.
    """
    return rx.upload.root(
        rx.button(rx.icon("paperclip", size=16, aria_hidden="true"), "Attach files",
                  variant="soft", type="button"),
        id=UPLOAD_ID,
        multiple=True,
        max_size=max_bytes,
        max_files=max_files,
        no_drag=False,
        on_drop=FilesState.upload_files(
            rx.upload_files_chunk(upload_id=UPLOAD_ID,
                                  on_upload_progress=FilesState.set_upload_percent)
        ),
        border="none",
        padding="0",
    )


def _upload_row(entry: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.text(entry["name"], size="1", trim="both", max_width="12rem", truncate=True),
        rx.text(entry["received"], size="1", color_scheme="gray"),
        rx.badge(entry["state"], size="1", variant="soft"),
        spacing="2",
        align="center",
        data_testid="upload-progress",
    )


def upload_progress() -> rx.Component:
    """Per-file progress of the current upload (shown under the composer).

    Returns:
        The progress list, empty when nothing is uploading.
    """
    return rx.cond(
        FilesState.visible_uploads.length() > 0,
        rx.vstack(
            rx.progress(value=FilesState.upload_percent, max=100, aria_label="Upload progress"),
            rx.foreach(FilesState.visible_uploads, _upload_row),
            spacing="1",
            width="100%",
        ),
    )


def _file_item(entry: rx.Var) -> rx.Component:
    return rx.el.li(
        rx.hstack(
            rx.icon("file", size=16, aria_hidden="true"),
            rx.vstack(
                rx.text(entry["filename"], size="2", weight="medium", truncate=True,
                        max_width="14rem"),
                rx.text(entry["size"], size="1", color_scheme="gray"),
                spacing="0",
            ),
            rx.spacer(),
            rx.icon_button(
                rx.icon("download", size=14),
                on_click=FilesState.download_file(entry["id"]),
                size="1", variant="ghost",
                aria_label="Download " + entry["filename"],
            ),
            rx.icon_button(
                rx.icon("trash-2", size=14),
                on_click=FilesState.delete_file(entry["id"], entry["filename"]),
                size="1", variant="ghost", color_scheme="red",
                aria_label="Delete " + entry["filename"],
            ),
            align="center",
            spacing="2",
            width="100%",
        ),
        list_style="none",
    )


def files_panel() -> rx.Component:
    """The side panel listing the session's files ("Attach files" is in the composer).

    Returns:
        The `region` named "Files".
    """
    return rx.card(
        rx.vstack(
            rx.heading("Files", size="3", as_="h2", id="files-title"),
            rx.cond(
                FilesState.files.length() > 0,
                rx.el.ul(rx.foreach(FilesState.files, _file_item), padding="0", margin="0",
                         width="100%"),
                rx.text("No files yet. Attach txt, md, csv, json, pdf or images.", size="1",
                        color_scheme="gray"),
            ),
            spacing="3",
            width="100%",
        ),
        role="region",
        aria_labelledby="files-title",
        width="100%",
    )
