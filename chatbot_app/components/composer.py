"""The message box: Enter sends, Shift+Enter adds a line; Stop (or Escape) while a reply streams.

Files are attached with the paperclip or by dropping them anywhere on the composer; each is checked
on the server as it arrives and shows as a removable chip until the message is sent. Send is disabled
while there is nothing to send, and while an image waits for a model that cannot read it: then the
reason shows beside it, with the ways out (send without the image, or switch to a model that can).
"""

from __future__ import annotations

import reflex as rx
from reflex.vars import Var

from chatbot_app.components.attachments import pending_files, with_named_file_input
from chatbot_app.components.browser_state import draft_present, read_draft, track_draft
from chatbot_app.components.mic import microphone
from chatbot_app.config import get_settings
from chatbot_app.state.attachments import UPLOAD_ID, ComposerFilesState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.settings import SettingsState

#: The composer's one file input (react-dropzone's), opened by the paperclip. A Var, so it is compiled into
#: the page: a string would be evaluated at run time, which the Content-Security-Policy forbids.
_OPEN_FILE_PICKER = Var(_js_expr="document.querySelector('#composer input[type=file]').click()")

#: An image is attached and the chosen model cannot read images.
_BLOCKED_BY_IMAGE = ComposerFilesState.has_image & ~SettingsState.vision_values.contains(SettingsState.model_choice)


def _vision_way_out() -> rx.Component:
    """Why the message cannot go as it is, and one click out of it."""
    first = SettingsState.vision_choices[0]
    return rx.cond(
        _BLOCKED_BY_IMAGE,
        rx.flex(
            rx.text(
                rx.cond(SettingsState.model_label != "", SettingsState.model_label, "This model"),
                " cannot read images.",
                size="2",
                id="send-blocked-reason",
            ),
            rx.button(
                "Remove the image and send",
                # A submit button: the images leave first (its click), then the form sends (its submit).
                type="submit",
                on_click=ComposerFilesState.remove_images,
                size="1",
                variant="soft",
                id="send-without-images",
            ),
            rx.cond(
                SettingsState.vision_choices.length() > 0,  # type: ignore[attr-defined]
                rx.button(
                    "Switch to ",
                    first.label,
                    type="button",
                    on_click=SettingsState.choose_model(first.value),
                    size="1",
                    variant="soft",
                    id="switch-to-vision-model",
                ),
            ),
            gap="2",
            align="center",
            justify="end",
            wrap="wrap",
            margin_top="0.5em",
            role="status",
            id="send-blocked",
        ),
    )


@rx.memo
def send_button() -> rx.Component:
    """Send, as a component of its own: it mounts again after each reply (and after a transcript), and
    its on_mount then reads the box, which the server may have cleared or filled meanwhile."""
    nothing_to_send = ~draft_present() & (ComposerFilesState.files.length() == 0)  # type: ignore[attr-defined]
    return rx.icon_button(
        rx.icon("arrow-up"),
        id="send-button",
        type="submit",
        aria_label="Send",
        size="3",
        disabled=nothing_to_send | _BLOCKED_BY_IMAGE,
        on_mount=read_draft(),
    )


def _send_button() -> rx.Component:
    return rx.cond(
        ComposerFilesState.transcribing,
        # While speech becomes text there is nothing to send yet.
        rx.icon_button(rx.icon("arrow-up"), type="button", aria_label="Send", size="3", disabled=True),
        # Keyed by the server's writes to the box: each mounts Send again (React could skip a
        # `transcribing` that was on for less than a frame), and its on_mount reads the box.
        rx.fragment(send_button(), key=ComposerFilesState.box_writes),
    )


def _tool_switches() -> rx.Component:
    """Web search for this conversation; off and disabled, with the reason, for a model without it."""
    return rx.hstack(
        rx.switch(
            id="web-search-toggle",
            checked=SettingsState.web_search & SettingsState.web_search_available,
            disabled=~SettingsState.web_search_available,
            on_change=SettingsState.toggle_web_search,
            size="3",  # 24 px high: a target a thumb can hit
        ),
        rx.el.label("Web search", html_for="web-search-toggle", class_name="field-label"),
        rx.cond(
            SettingsState.tools_reason != "",
            rx.text(SettingsState.tools_reason, size="1", color_scheme="gray", id="tools-unavailable", min_width="0"),
        ),
        align="center",
        spacing="2",
        wrap="wrap",
        margin_top="0.4em",
        class_name="tool-switches",
    )


def _message_form() -> rx.Component:
    return rx.form(
        pending_files(),
        rx.flex(
            rx.icon_button(
                rx.icon("paperclip", size=18),
                id="attach-button",
                type="button",
                on_click=rx.call_script(_OPEN_FILE_PICKER),
                aria_label="Attach files",
                variant="soft",
                color_scheme="gray",
                size="3",
            ),
            rx.text_area(
                id="chat-input",
                name="message",
                placeholder="Message the assistant",
                enter_key_submit=True,
                auto_height=True,
                auto_focus=True,
                rows="1",
                aria_label="Message",
                class_name="chat-input",
                flex="1",
                size="3",
                variant="surface",
                on_change=track_draft(),
                on_focus=read_draft(),  # the server writes a transcript here, then focuses the box
            ),
            microphone(),
            rx.cond(
                ReplyState.streaming,
                rx.icon_button(
                    rx.icon("square"),
                    id="stop-button",
                    type="button",
                    on_click=ReplyState.stop,
                    aria_label="Stop generating (Escape)",
                    title="Stop generating (Escape)",
                    color_scheme="gray",
                    size="3",
                ),
                _send_button(),
            ),
            gap="2",
            align="end",
            width="100%",
        ),
        _tool_switches(),
        _vision_way_out(),
        rx.cond(
            ReplyState.notice != "",
            rx.text(ReplyState.notice, id="notice", size="2", color_scheme="red", margin_top="0.5em", role="status"),
        ),
        on_submit=ReplyState.send_message,
        # Not reset here: the message stays in the box until it is stored (ReplyState clears it then).
        reset_on_submit=False,
        width="100%",
    )


def composer() -> rx.Component:
    settings = get_settings()  # the browser's limits; the server checks them again
    return rx.box(
        with_named_file_input(
            rx.upload.root(
                _message_form(),
                id=UPLOAD_ID,
                multiple=True,
                max_files=settings.max_attachments,
                max_size=settings.max_attachment_bytes,
                no_click=True,  # a click in the message box must not open the file picker
                no_keyboard=True,
                on_drop=ComposerFilesState.add_files(rx.upload_files(upload_id=UPLOAD_ID)),
                on_drop_rejected=ComposerFilesState.refuse_files,
                drag_active_style={"outline": "2px dashed var(--accent-8)", "border_radius": "var(--radius-4)"},
                width="100%",
            ),
            "Attach files",
        ),
        id="composer",
        width="100%",
    )
