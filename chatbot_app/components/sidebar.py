"""The sidebar: new chat, search, and the conversation list (pinned first, newest first)."""

from __future__ import annotations

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import ConversationItem, LibraryState, SearchHitView, Segment


def _segment(segment: Segment) -> rx.Component:
    return rx.cond(segment.marked, rx.el.mark(segment.text), rx.text.span(segment.text))


def _search_hit(hit: SearchHitView) -> rx.Component:
    return rx.box(
        rx.text(hit.title, size="2", weight="medium", trim="both", class_name="ellipsis"),
        rx.text(rx.foreach(hit.segments, _segment), size="1", color_scheme="gray", class_name="snippet"),
        on_click=LibraryState.open_hit(hit.conversation_id, hit.message_id),
        custom_attrs={"data-testid": "search-hit", "role": "button", "tabindex": "0"},
        class_name="sidebar-row",
    )


def _item_menu(item: ConversationItem) -> rx.Component:
    return rx.dropdown_menu.root(
        rx.dropdown_menu.trigger(
            rx.icon_button(rx.icon("ellipsis", size=16), variant="ghost", size="1", aria_label="Conversation actions")
        ),
        rx.dropdown_menu.content(
            rx.dropdown_menu.item("Rename", on_click=LibraryState.start_rename(item.id)),
            rx.dropdown_menu.item(rx.cond(item.pinned, "Unpin", "Pin"), on_click=LibraryState.toggle_pin(item.id)),
            rx.dropdown_menu.separator(),
            rx.dropdown_menu.item("Delete…", color="red", on_click=LibraryState.ask_delete(item.id)),
        ),
    )


def _conversation_item(item: ConversationItem) -> rx.Component:
    return rx.hstack(
        rx.cond(item.pinned, rx.icon("pin", size=14, aria_label="Pinned", flex_shrink="0")),
        rx.link(
            item.title,
            href="/c/" + item.id,
            underline="none",
            color_scheme="gray",
            high_contrast=True,
            size="2",
            class_name="ellipsis",
            flex="1",
        ),
        _item_menu(item),
        align="center",
        spacing="2",
        custom_attrs={"data-testid": "conversation-item", "data-id": item.id},
        class_name=rx.cond(item.id == ConversationState.conversation_id, "sidebar-row active", "sidebar-row"),
    )


def _rename_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename conversation"),
            rx.form(
                rx.flex(
                    rx.input(name="title", id="rename-input", placeholder="New title", auto_focus=True),
                    rx.flex(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Rename", type="submit", id="rename-confirm"),
                        gap="2",
                        justify="end",
                    ),
                    direction="column",
                    gap="3",
                ),
                on_submit=LibraryState.rename,
            ),
        ),
        open=LibraryState.renaming_id != "",
        on_open_change=lambda _open: LibraryState.start_rename(""),
    )


def _delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this conversation?"),
            rx.alert_dialog.description("Its messages are deleted for good. This cannot be undone."),
            rx.flex(
                rx.alert_dialog.cancel(
                    rx.button("Cancel", variant="soft", color_scheme="gray", on_click=LibraryState.cancel_delete)
                ),
                rx.alert_dialog.action(
                    rx.button("Delete", color_scheme="red", id="confirm-delete", on_click=LibraryState.confirm_delete)
                ),
                gap="2",
                justify="end",
                margin_top="1em",
            ),
        ),
        open=LibraryState.pending_delete_id != "",
    )


IMPORT_UPLOAD_ID = "import-upload"


def _library_actions() -> rx.Component:
    """Export everything, or import our JSON or ChatGPT's conversations.json."""
    return rx.hstack(
        rx.upload.root(
            rx.button(rx.icon("upload", size=14), "Import", variant="ghost", size="1", id="import-button"),
            id=IMPORT_UPLOAD_ID,
            accept={"application/json": [".json"]},
            max_files=1,
            max_size=get_settings().max_import_bytes,
            multiple=False,
            no_drag=True,
            on_drop=LibraryState.import_file(rx.upload_files(upload_id=IMPORT_UPLOAD_ID)),
            on_drop_rejected=LibraryState.reject_import,
        ),
        rx.button(
            rx.icon("download", size=14),
            "Export all",
            variant="ghost",
            size="1",
            on_click=LibraryState.export_everything,
            id="export-all-button",
        ),
        justify="between",
        width="100%",
        margin_top="auto",
        padding_top="0.5em",
        border_top="1px solid var(--gray-a4)",
    )


def sidebar() -> rx.Component:
    return rx.flex(
        rx.hstack(
            rx.button(
                rx.icon("square-pen", size=16),
                "New chat",
                id="sidebar-new-chat",
                on_click=ConversationState.new_chat,
                variant="soft",
                flex="1",
            ),
            rx.icon_button(
                rx.icon("x"),
                on_click=LibraryState.toggle_sidebar,
                variant="ghost",
                aria_label="Close sidebar",
                class_name="mobile-only",
            ),
            width="100%",
        ),
        rx.input(
            rx.input.slot(rx.icon("search", size=14)),
            id="search-input",
            placeholder="Search conversations",
            value=LibraryState.search_query,
            on_change=LibraryState.search.debounce(250),
            type="search",
            aria_label="Search conversations",
            width="100%",
        ),
        rx.cond(
            LibraryState.search_query != "",
            rx.vstack(
                rx.foreach(LibraryState.search_hits, _search_hit),
                rx.cond(
                    LibraryState.search_hits.length() == 0,
                    rx.text("No matches.", size="2", color_scheme="gray", padding="0.5em"),
                ),
                spacing="1",
                width="100%",
            ),
            rx.vstack(
                rx.foreach(LibraryState.conversations, _conversation_item),
                rx.cond(
                    LibraryState.has_more,
                    rx.button("Load more", on_click=LibraryState.load_more, variant="ghost", size="2", width="100%"),
                ),
                spacing="1",
                width="100%",
            ),
        ),
        rx.cond(LibraryState.library_notice != "", rx.text(LibraryState.library_notice, size="2", id="library-notice")),
        _library_actions(),
        _rename_dialog(),
        _delete_dialog(),
        direction="column",
        gap="3",
        padding="0.75em",
        class_name=rx.cond(LibraryState.sidebar_open, "sidebar open", "sidebar"),
        id="sidebar",
    )
