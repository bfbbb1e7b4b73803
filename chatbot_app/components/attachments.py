"""Files in the composer (removable chips) and in a sent message (thumbnails and links)."""

from __future__ import annotations

import reflex as rx
from reflex_components_core.el.elements.forms import Input

from chatbot_app.state.attachments import ComposerFilesState, PendingChip
from chatbot_app.state.views import FileChip


def with_named_file_input(upload: rx.Component, name: str) -> rx.Component:
    """An rx.upload.root whose hidden <input type=file> has a name (rx.upload offers no prop for it); the
    input is what assistive technology meets when the upload opens the file picker."""
    pending = [upload]
    while pending:
        component = pending.pop()
        if isinstance(component, Input):
            component.custom_attrs["aria-label"] = name
        pending.extend(child for child in getattr(component, "children", []) if isinstance(child, rx.Component))
    return upload


def _pending_chip(chip: PendingChip, index: rx.Var[int]) -> rx.Component:
    return rx.badge(
        rx.cond(
            chip.thumbnail != "",
            rx.image(src=chip.thumbnail, alt="", class_name="chip-thumbnail"),
            rx.icon(rx.cond(chip.is_image, "image", "file-text"), size=14, aria_hidden="true"),
        ),
        rx.text(chip.filename, class_name="attachment-name", max_width="16em", truncate=True),
        rx.text(chip.size, color_scheme="gray", size="1"),
        rx.icon_button(
            rx.icon("x", size=12),
            type="button",
            variant="ghost",
            size="1",
            radius="full",
            aria_label="Remove " + chip.filename,
            class_name="remove-attachment",
            on_click=ComposerFilesState.remove_file(index),
        ),
        custom_attrs={"data-testid": "attachment"},
        variant="surface",
        size="2",
        radius="large",
    )


def pending_files() -> rx.Component:
    """The files waiting to be sent, and what the user should know about them (cut to fit the context)."""
    return rx.fragment(
        rx.cond(
            ComposerFilesState.files.length() > 0,  # type: ignore[attr-defined]
            rx.flex(rx.foreach(ComposerFilesState.files, _pending_chip), gap="2", wrap="wrap", margin_bottom="0.5em"),
        ),
        rx.foreach(
            ComposerFilesState.file_notices,
            lambda notice: rx.text(notice, size="1", color_scheme="amber", class_name="file-notice"),
        ),
        rx.cond(
            ComposerFilesState.transcribing,
            rx.hstack(rx.spinner(size="1"), rx.text("Transcribing…", size="1"), id="transcribing"),
        ),
    )


def _message_file(chip: FileChip) -> rx.Component:
    return rx.cond(
        chip.is_image,
        rx.link(
            rx.image(
                src=chip.url, alt=chip.filename, class_name="attachment-thumbnail", max_height="10em", loading="lazy"
            ),
            href=chip.url,
            is_external=True,
            custom_attrs={"data-testid": "message-attachment", "data-kind": "image"},
        ),
        rx.link(
            rx.badge(rx.icon("paperclip", size=12), chip.filename, variant="soft", size="2"),
            href=chip.url,
            is_external=True,
            custom_attrs={"data-testid": "message-attachment", "data-kind": "file"},
        ),
    )


def message_files(files: rx.Var[list[FileChip]]) -> rx.Component:
    """A sent message's files: images as thumbnails, anything else as a download link."""
    return rx.cond(
        files.length() > 0,  # type: ignore[attr-defined]
        rx.flex(rx.foreach(files, _message_file), gap="2", wrap="wrap", justify="end", class_name="message-files"),
    )
