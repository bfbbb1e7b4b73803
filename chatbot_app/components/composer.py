"""The message box: Enter sends, Shift+Enter adds a line; Stop while a reply streams.

Files are attached with the paperclip or by dropping them anywhere on the composer; each is checked
on the server as it arrives and shows as a removable chip until the message is sent.
"""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.attachments import pending_files
from chatbot_app.components.mic import microphone
from chatbot_app.config import get_settings
from chatbot_app.state.attachments import UPLOAD_ID, ComposerFilesState
from chatbot_app.state.reply import ReplyState

#: The composer's one file input (react-dropzone's), opened by the paperclip.
_OPEN_FILE_PICKER = "document.querySelector('#composer input[type=file]').click()"


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
            ),
            microphone(),
            rx.cond(
                ReplyState.streaming,
                rx.icon_button(
                    rx.icon("square"),
                    id="stop-button",
                    type="button",
                    on_click=ReplyState.stop,
                    aria_label="Stop generating",
                    color_scheme="gray",
                    size="3",
                ),
                rx.icon_button(rx.icon("arrow-up"), id="send-button", type="submit", aria_label="Send", size="3"),
            ),
            gap="2",
            align="end",
            width="100%",
        ),
        rx.cond(
            ReplyState.notice != "",
            rx.text(ReplyState.notice, id="notice", size="2", color_scheme="red", margin_top="0.5em"),
        ),
        on_submit=ReplyState.send_message,
        # Not reset here: the message stays in the box until it is stored (ReplyState clears it then).
        reset_on_submit=False,
        width="100%",
    )


def composer() -> rx.Component:
    settings = get_settings()  # the browser's limits; the server checks them again
    return rx.box(
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
        id="composer",
        width="100%",
    )
