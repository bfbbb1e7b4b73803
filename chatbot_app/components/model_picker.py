"""The model picker: every configured provider's models, grouped by provider."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.reply import ReplyState
from chatbot_app.state.settings import ModelGroupView, SettingsState


def _group(group: ModelGroupView) -> rx.Component:
    return rx.el.optgroup(
        rx.foreach(group.options, lambda option: rx.el.option(option.label, value=option.value)),
        label=group.label,
    )


def styled_select(select: rx.Component) -> rx.Component:
    """A native <select> drawn like the other controls, with its own chevron (the native one is hidden)."""
    return rx.box(select, rx.icon("chevron-down", size=14, aria_hidden="true"), class_name="select-wrap")


def model_picker() -> rx.Component:
    # A native <select>: keyboard- and screen-reader-friendly, and the phone's own picker on mobile.
    return styled_select(
        rx.el.select(
            rx.foreach(SettingsState.model_groups, _group),
            id="model-select",
            value=SettingsState.model_choice,
            on_change=SettingsState.choose_model,
            disabled=ReplyState.streaming,
            aria_label="Model",
            title=SettingsState.answering_label,
            class_name="model-select",
        )
    )
