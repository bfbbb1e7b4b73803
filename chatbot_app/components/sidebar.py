"""The sidebar: new chat, search, and the conversation list (pinned first, then by day, newest first).

On a phone it is a drawer over the chat: a backdrop behind it, closed by choosing a conversation, by
the backdrop, by its ✕ or by Escape; while closed it is hidden (CSS), so it leaves the tab order.
"""

from __future__ import annotations

import reflex as rx
from reflex.vars import Var

from chatbot_app.components.attachments import with_named_file_input
from chatbot_app.config import get_settings
from chatbot_app.state.conversation import ConversationState
from chatbot_app.state.library import ConversationItem, LibraryState, SearchHitView, Segment

IMPORT_UPLOAD_ID = "import-upload"


def _segment(segment: Segment) -> rx.Component:
    return rx.cond(segment.marked, rx.el.mark(segment.text), rx.text.span(segment.text))


def _search_hit(hit: SearchHitView) -> rx.Component:
    return rx.el.button(
        rx.text(hit.title, size="2", weight="medium", class_name="ellipsis hit-title", as_="span"),
        rx.text(rx.foreach(hit.segments, _segment), size="1", color_scheme="gray", class_name="snippet", as_="span"),
        type="button",
        on_click=LibraryState.open_hit(hit.conversation_id, hit.message_id),
        custom_attrs={"data-testid": "search-hit"},
        class_name="sidebar-row search-hit",
    )


def _item_menu(item: ConversationItem) -> rx.Component:
    return rx.dropdown_menu.root(
        rx.dropdown_menu.trigger(
            rx.icon_button(
                rx.icon("ellipsis", size=16),
                variant="ghost",
                size="2",
                color_scheme="gray",
                aria_label="Actions for " + item.title,
                class_name="conversation-actions",
            )
        ),
        rx.dropdown_menu.content(
            rx.dropdown_menu.item("Rename", on_click=LibraryState.start_rename(item.id)),
            rx.dropdown_menu.item(rx.cond(item.pinned, "Unpin", "Pin"), on_click=LibraryState.toggle_pin(item.id)),
            rx.dropdown_menu.separator(),
            rx.dropdown_menu.item("Delete…", color="red", on_click=LibraryState.ask_delete(item.id)),
        ),
    )


def _conversation_item(item: ConversationItem) -> rx.Component:
    return rx.fragment(
        rx.cond(item.group_start, rx.text(item.group, as_="div", size="1", weight="medium", class_name="group-label")),
        rx.hstack(
            rx.cond(item.pinned, rx.icon("pin", size=14, aria_hidden="true", flex_shrink="0")),
            rx.link(
                item.title,
                href="/c/" + item.id,
                underline="none",
                color_scheme="gray",
                high_contrast=True,
                size="2",
                class_name="ellipsis conversation-link",
                flex="1",
                # No on_click: opening the conversation's page closes the drawer (LibraryState.refresh).
                aria_current=rx.cond(item.id == ConversationState.conversation_id, "page", "false"),
            ),
            _item_menu(item),
            align="center",
            spacing="2",
            custom_attrs={"data-testid": "conversation-item", "data-id": item.id, "data-group": item.group},
            class_name=rx.cond(item.id == ConversationState.conversation_id, "sidebar-row active", "sidebar-row"),
        ),
    )


def _rename_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename conversation"),
            rx.form(
                rx.flex(
                    rx.input(
                        name="title",
                        id="rename-input",
                        default_value=LibraryState.renaming_title,
                        # A new key for each conversation: the field opens with that one's title.
                        key=LibraryState.renaming_id,
                        placeholder="New title",
                        aria_label="New title",
                        auto_focus=True,
                        max_length=200,
                    ),
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


def _import_progress() -> rx.Component:
    """An import running as a job of the server: how far it has got. It goes on if the page is left."""
    return rx.cond(
        LibraryState.import_running,
        rx.vstack(
            rx.hstack(
                rx.text("Importing", size="2", weight="medium"),
                rx.text(LibraryState.import_percent.to_string() + "%", size="2", color_scheme="gray"),
                justify="between",
                width="100%",
            ),
            rx.progress(value=LibraryState.import_percent, max=100, aria_label="Import progress", width="100%"),
            rx.text(LibraryState.import_status, size="1", color_scheme="gray", id="import-status"),
            rx.text("It goes on if you leave this page.", size="1", color_scheme="gray"),
            spacing="1",
            width="100%",
            padding="0.5em",
            custom_attrs={"data-testid": "import-progress"},
        ),
    )


def _library_actions() -> rx.Component:
    """Export everything, or import our JSON or ChatGPT's conversations.json."""
    return rx.hstack(
        with_named_file_input(
            rx.upload.root(
                rx.button(
                    rx.icon("upload", size=14),
                    "Import",
                    variant="ghost",
                    size="2",
                    id="import-button",
                    disabled=LibraryState.import_running,  # one import at a time
                    aria_label="Import conversations from a JSON file",
                ),
                id=IMPORT_UPLOAD_ID,
                accept={"application/json": [".json"]},
                max_files=1,
                max_size=get_settings().max_import_bytes,
                multiple=False,
                no_drag=True,
                # The button inside is the one stop for the keyboard; the zone itself is not another.
                no_keyboard=True,
                on_drop=LibraryState.import_file(rx.upload_files(upload_id=IMPORT_UPLOAD_ID)),
                on_drop_rejected=LibraryState.reject_import,
            ),
            "Import conversations from a JSON file",
        ),
        rx.button(
            rx.icon("download", size=14),
            "Export all",
            variant="ghost",
            size="2",
            on_click=LibraryState.export_everything,
            id="export-all-button",
            aria_label="Export all conversations",
        ),
        justify="between",
        width="100%",
        margin_top="auto",
        padding_top="0.5em",
        border_top="1px solid var(--gray-a4)",
    )


def _conversation_list() -> rx.Component:
    return rx.cond(
        LibraryState.search_query != "",
        rx.vstack(
            rx.foreach(LibraryState.search_hits, _search_hit),
            rx.cond(
                LibraryState.search_hits.length() == 0,
                rx.text("No matches.", size="2", color_scheme="gray", padding="0.5em"),
            ),
            spacing="1",
            width="100%",
            id="search-results",
        ),
        rx.vstack(
            rx.foreach(LibraryState.conversations, _conversation_item),
            rx.cond(
                LibraryState.has_more,
                rx.button("Load more", on_click=LibraryState.load_more, variant="ghost", size="2", width="100%"),
            ),
            spacing="1",
            width="100%",
            id="conversation-list",
        ),
    )


def sidebar() -> rx.Component:
    return rx.fragment(
        # The drawer's backdrop (phones only, and only while it is open).
        rx.cond(
            LibraryState.sidebar_open,
            rx.box(on_click=LibraryState.close_sidebar, class_name="sidebar-backdrop", aria_hidden="true"),
        ),
        rx.el.nav(
            rx.hstack(
                rx.button(
                    rx.icon("square-pen", size=16),
                    "New chat",
                    id="sidebar-new-chat",
                    on_click=ConversationState.new_chat,  # the new page's load closes the drawer
                    variant="soft",
                    size="2",
                    flex="1",
                ),
                rx.icon_button(
                    rx.icon("x"),
                    on_click=LibraryState.close_sidebar,
                    variant="ghost",
                    size="2",
                    aria_label="Close the conversation list",
                    class_name="mobile-only",
                    id="sidebar-close",
                ),
                width="100%",
                align="center",
            ),
            rx.input(
                rx.input.slot(rx.icon("search", size=14, aria_hidden="true")),
                id="search-input",
                placeholder="Search conversations",
                value=LibraryState.search_query,
                on_change=LibraryState.search.debounce(250),
                type="search",
                aria_label="Search conversations",
                width="100%",
            ),
            _conversation_list(),
            _import_progress(),
            rx.cond(
                LibraryState.library_notice != "",
                rx.text(LibraryState.library_notice, size="2", id="library-notice", role="status"),
            ),
            _library_actions(),
            _rename_dialog(),
            _delete_dialog(),
            # Once shown, the browser says how far it is from UTC: "Today" is then the user's today.
            on_mount=LibraryState.set_clock(Var(_js_expr="new Date().getTimezoneOffset()", _var_type=int)),
            aria_label="Conversations",
            class_name=rx.cond(LibraryState.sidebar_open, "sidebar open", "sidebar"),
            id="sidebar",
        ),
    )
