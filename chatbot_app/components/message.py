"""A chat message: the user's on the right (editable), the assistant's as rendered Markdown; each with its time.

Actions are 32 px buttons, always shown (Edit too: touch screens have no hover).
"""

from __future__ import annotations

from typing import NamedTuple

import reflex as rx

from chatbot_app.components.attachments import message_files
from chatbot_app.components.markdown import message_markdown
from chatbot_app.components.read_aloud import READ_ALOUD_CLASS, is_playing
from chatbot_app.components.reasoning import live_reasoning, reasoning_section
from chatbot_app.components.tool_calls import sources, tool_calls
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.feedback import CopyFeedbackState
from chatbot_app.state.read_aloud import ReadAloudState
from chatbot_app.state.reply import ReplyState
from chatbot_app.state.views import MessageView


def _status_badge(status: rx.Var[str]) -> rx.Component:
    return rx.match(
        status,
        ("stopped", rx.badge("stopped", color_scheme="gray", variant="soft")),
        ("interrupted", rx.badge("interrupted", color_scheme="orange", variant="soft")),
        ("error", rx.badge("error", color_scheme="red", variant="soft")),
        rx.fragment(),
    )


def _action(icon: str, label: str | rx.Var[str], **props: object) -> rx.Component:
    return rx.tooltip(
        rx.icon_button(
            rx.icon(icon, size=16), variant="ghost", color_scheme="gray", size="2", aria_label=label, **props
        ),
        content=label,
    )


def _version_switch(message: MessageView) -> rx.Component:
    """ "< 2/3 >" on a message that has other versions (an edit or a regeneration made them): the arrows show
    the previous or next one and the newest path below it. Not while a reply is written on this path."""
    place, count = message.version_place, message.version_count
    return rx.cond(
        count > 1,
        rx.hstack(
            _action(
                "chevron-left",
                "Previous version",
                on_click=[ConversationState.switch_version(message.id, -1), ReplyState.resume],
                disabled=place <= 1,
                custom_attrs={"data-testid": "branch-prev"},
            ),
            rx.text(
                place.to_string() + "/" + count.to_string(),
                size="1",
                color_scheme="gray",
                custom_attrs={"data-testid": "branch-position"},
                aria_label="Version " + place.to_string() + " of " + count.to_string(),
            ),
            _action(
                "chevron-right",
                "Next version",
                on_click=[ConversationState.switch_version(message.id, 1), ReplyState.resume],
                disabled=place >= count,
                custom_attrs={"data-testid": "branch-next"},
            ),
            spacing="0",
            align="center",
            class_name="version-switch",
        ),
    )


def _fork_action(message: MessageView) -> rx.Component:
    """ "Branch in new chat": a new conversation with the path up to this message (not for one still unsaved); from
    a question, the new chat answers it."""
    return rx.cond(
        message.id != 0,
        _action(
            "git-branch",
            "Branch in new chat",
            on_click=ConversationState.fork(message.id),
            custom_attrs={"data-testid": "fork-button"},
        ),
    )


def message_time(created: rx.Var[str]) -> rx.Component:
    """When a message was written, in the reader's time zone ("Today at 14:02"); the full date on hover."""
    return rx.moment(
        created,
        calendar=True,
        local=True,
        interval=0,  # no timer per message: the label is fixed once shown
        with_title=True,
        title_format="LLLL",
        element="time",
        class_name="message-time",
    )


def _assistant_bubble(
    content: rx.Var[str],
    footer: rx.Component,
    status: rx.Var[str] | str,
    thinking: rx.Component,
    tools: rx.Component,
    source_list: rx.Component,
) -> rx.Component:
    return rx.box(
        thinking,
        tools,
        message_markdown(content=content),
        source_list,
        footer,
        custom_attrs={"data-testid": "message", "data-role": "assistant", "data-status": status},
        class_name="message assistant-message",
        width="100%",
    )


def _assistant_footer(message: MessageView, last_reply_id: rx.Var[int]) -> rx.Component:
    is_last = message.id == last_reply_id
    return rx.vstack(
        rx.cond(message.error != "", rx.callout(message.error, icon="triangle_alert", color_scheme="red", size="1")),
        rx.hstack(
            _version_switch(message),
            _status_badge(message.status),
            _action(
                "copy",
                "Copy reply",
                on_click=[rx.set_clipboard(message.content), CopyFeedbackState.copied("Message")],
                class_name="copy-button",
            ),
            _fork_action(message),
            rx.cond(
                ReadAloudState.read_aloud_enabled & (message.content != ""),
                rx.cond(
                    is_playing(message.id),
                    _action(
                        "square",
                        "Stop reading",
                        on_click=ReadAloudState.toggle(message.id),
                        class_name=READ_ALOUD_CLASS,
                    ),
                    _action(
                        "volume-2",
                        "Read aloud",
                        on_click=ReadAloudState.toggle(message.id),
                        class_name=READ_ALOUD_CLASS,
                    ),
                ),
            ),
            rx.cond(  # hidden while a reply is written (chat.css: .replying), not read here: see history_page
                is_last,
                _action(
                    "rotate-ccw",
                    rx.cond(message.status == "complete", "Regenerate", "Retry"),
                    on_click=ReplyState.regenerate,
                    class_name="regenerate-button",
                ),
            ),
            message_time(message.created),
            rx.text(message.details, size="1", color_scheme="gray", class_name="message-details"),
            align="center",
            spacing="2",
        ),
        spacing="1",
        align="start",
    )


def _user_bubble(message: MessageView) -> rx.Component:
    return rx.vstack(
        rx.box(
            message_files(message.attachments),
            rx.text(message.content, white_space="pre-wrap", class_name="user-text"),
            custom_attrs={"data-testid": "message", "data-role": "user"},
            class_name="message user-message",
        ),
        rx.hstack(
            _version_switch(message),
            message_time(message.created),
            _fork_action(message),
            _action(  # hidden while a reply is written (chat.css: .replying)
                "pencil",
                "Edit message",
                on_click=ConversationState.start_edit(message.id),
                class_name="edit-button",
            ),
            _action(
                "copy",
                "Copy message",
                on_click=[rx.set_clipboard(message.content), CopyFeedbackState.copied("Message")],
                class_name="copy-button",
            ),
            align="center",
            spacing="1",
            class_name="message-actions",
        ),
        align="end",
        spacing="1",
        width="100%",
        class_name="user-row",
    )


def _edit_form(message: MessageView) -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text_area(
                name="message",
                default_value=message.content,
                id="edit-input",
                auto_focus=True,
                enter_key_submit=True,
                width="100%",
                aria_label="Edited message",
            ),
            rx.text("Saving answers it as a new version; this one and its replies stay, one click away.", size="1"),
            rx.hstack(
                rx.button(
                    "Cancel", type="button", variant="soft", color_scheme="gray", on_click=ConversationState.cancel_edit
                ),
                rx.button("Save and resend", type="submit", id="edit-save"),
                justify="end",
                width="100%",
            ),
            width="100%",
        ),
        on_submit=ReplyState.edit_message,
        width="100%",
    )


class Marks(NamedTuple):
    """What a message shows of the page's state: whether it is being edited, in focus, the newest reply."""

    editing_id: rx.Var[int]
    focus_id: rx.Var[int]
    last_reply_id: rx.Var[int]


def message_row(message: MessageView, marks: Marks) -> rx.Component:
    return rx.box(
        rx.cond(
            message.role == "user",
            # A message just sent has id 0 until it is stored: never the one being edited (editing_id 0 is none).
            rx.cond(
                (message.id == marks.editing_id) & (message.id != 0),
                _edit_form(message),
                _user_bubble(message),
            ),
            _assistant_bubble(
                message.content,
                _assistant_footer(message, marks.last_reply_id),
                message.status,
                reasoning_section(message.reasoning, message.thinking),
                tool_calls(message.tool_calls),
                sources(message.sources),
            ),
        ),
        id="m-" + message.id.to_string(),
        class_name=rx.cond(message.id == marks.focus_id, "message-row focused", "message-row"),
        width="100%",
    )


@rx.memo
def history_page(
    messages: rx.Var[list[MessageView]],
    editing_id: rx.Var[int],
    focus_id: rx.Var[int],
    last_reply_id: rx.Var[int],
) -> rx.Component:
    """One page of the history (state/history_pages.py), rendered again only when its props change (React.memo).

    Its messages read no state of their own but these props: a change to the history (a turn, a page loaded)
    renders the pages it changed, and a streamed frame (ReplyState) renders none.
    """
    marks = Marks(editing_id, focus_id, last_reply_id)
    return rx.fragment(rx.foreach(messages, lambda message: message_row(message, marks)))


def history() -> rx.Component:
    """The history shown, page by page; a page is keyed by its number, so loading earlier ones moves none."""
    order = ConversationState.history_order

    def page(index: rx.Var[int], position: rx.Var[int]) -> rx.Component:
        # Only the last two pages can hold the newest reply: the others keep their props as it changes.
        near_end = position >= order.length() - 2  # type: ignore[attr-defined]
        return history_page(
            messages=ConversationState.history_page(index),
            editing_id=ConversationState.editing_id,
            focus_id=ConversationState.focus_message_id,
            last_reply_id=rx.cond(near_end, ConversationState.last_reply_id, 0),
            key=index,
        )

    return rx.foreach(order, page)


def streaming_row() -> rx.Component:
    """The reply being generated: its parts joined in the browser, so a frame carries only new text."""
    return rx.cond(
        ReplyState.streaming,
        _assistant_bubble(
            ReplyState.joined_stream(),
            rx.hstack(
                rx.cond(ReplyState.stream_part_0 == "", rx.spinner(size="2", aria_label="Generating")),
                rx.cond(
                    ReplyState.stream_notice != "",
                    rx.text(ReplyState.stream_notice, size="1", color_scheme="amber", id="retry-notice"),
                ),
                align="center",
            ),
            "streaming",
            live_reasoning(),
            tool_calls(ReplyState.live_tools, live=True),
            rx.fragment(),
        ),
    )
