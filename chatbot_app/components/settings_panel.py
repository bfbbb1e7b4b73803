"""The settings popover: temperature, top_p, max tokens, system prompt, presets, batch mode."""

from __future__ import annotations

import reflex as rx

from chatbot_app.services.chat_settings import MAX_TOKENS_RANGE, TEMPERATURE_RANGE
from chatbot_app.state.settings import SettingsState


def _labelled(label: str, value: rx.Var | str, control: rx.Component) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text(label, size="2", weight="medium"),
            rx.text(value, size="2", color_scheme="gray"),
            justify="between",
            width="100%",
        ),
        control,
        spacing="1",
        width="100%",
    )


def _settings_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            _labelled(
                "Temperature",
                SettingsState.temperature.to_string(),
                rx.slider(
                    name="temperature",
                    default_value=[SettingsState.temperature],
                    min=TEMPERATURE_RANGE[0],
                    max=TEMPERATURE_RANGE[1],
                    step=0.05,
                    aria_label="Temperature",
                ),
            ),
            _labelled(
                "Top P",
                SettingsState.top_p.to_string(),
                rx.slider(
                    name="top_p", default_value=[SettingsState.top_p], min=0.05, max=1, step=0.05, aria_label="Top P"
                ),
            ),
            _labelled(
                "Max tokens",
                "",
                rx.input(
                    name="max_tokens",
                    id="max-tokens-input",
                    type="number",
                    default_value=SettingsState.max_tokens.to_string(),
                    # No HTML min/max: the server's message names the allowed range.
                    placeholder=f"{MAX_TOKENS_RANGE[0]} to {MAX_TOKENS_RANGE[1]:,}",
                    width="100%",
                ),
            ),
            _labelled(
                "System prompt",
                "",
                rx.text_area(
                    name="system_prompt",
                    id="system-prompt-input",
                    default_value=SettingsState.system_prompt,
                    rows="4",
                    width="100%",
                ),
            ),
            rx.hstack(
                rx.switch(name="batch", default_checked=SettingsState.batch_mode, id="batch-switch"),
                rx.text("Whole reply at once (no streaming)", size="2"),
                align="center",
            ),
            rx.button("Apply", type="submit", id="apply-settings", width="100%"),
            spacing="3",
            width="100%",
        ),
        # Re-mount when settings change from elsewhere (another conversation, a preset).
        key=SettingsState.form_version,
        on_submit=SettingsState.apply_settings,
        width="100%",
    )


def _presets() -> rx.Component:
    return rx.vstack(
        rx.text("Presets", size="2", weight="medium"),
        rx.el.select(
            rx.el.option("Use a preset…", value="", disabled=True),
            rx.foreach(SettingsState.preset_names, lambda name: rx.el.option(name, value=name)),
            value="",
            on_change=SettingsState.apply_preset,
            id="preset-select",
            aria_label="System prompt preset",
            class_name="model-select",
        ),
        rx.form(
            rx.hstack(
                rx.input(name="preset_name", placeholder="Name this prompt", size="2", flex="1", id="preset-name"),
                rx.button("Save", type="submit", variant="soft", size="2", id="save-preset"),
                width="100%",
            ),
            on_submit=SettingsState.save_preset,
            reset_on_submit=True,
            width="100%",
        ),
        spacing="2",
        width="100%",
    )


def settings_panel() -> rx.Component:
    return rx.popover.root(
        rx.popover.trigger(
            rx.icon_button(rx.icon("sliders-horizontal"), variant="soft", id="settings-button", aria_label="Settings")
        ),
        rx.popover.content(
            rx.vstack(
                rx.heading("Conversation settings", size="3"),
                rx.text(SettingsState.answering_label, size="1", color_scheme="gray", id="answering-label"),
                _settings_form(),
                rx.separator(),
                _presets(),
                rx.cond(
                    SettingsState.settings_notice != "",
                    rx.text(SettingsState.settings_notice, size="2", id="settings-notice"),
                ),
                spacing="3",
            ),
            width="min(22em, 92vw)",
            side="bottom",
            align="end",
        ),
    )
