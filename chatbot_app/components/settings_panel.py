"""The settings popover: temperature, top_p, max tokens, system prompt, Read aloud voice, presets, batch mode."""

from __future__ import annotations

import reflex as rx

from chatbot_app.components.model_picker import styled_select
from chatbot_app.services.chat_settings import MAX_TOKENS_RANGE, TEMPERATURE_RANGE
from chatbot_app.state.settings import SettingsState


def _labelled(label: str, value: rx.Var | str, control: rx.Component, control_id: str) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.el.label(label, html_for=control_id, class_name="field-label"),
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
                # Native ranges: labelled by their <label>, and the phone's own control.
                rx.el.input(
                    type="range",
                    name="temperature",
                    id="temperature-input",
                    default_value=SettingsState.temperature.to_string(),
                    min=TEMPERATURE_RANGE[0],
                    max=TEMPERATURE_RANGE[1],
                    step=0.05,
                    class_name="range-input",
                ),
                "temperature-input",
            ),
            _labelled(
                "Top P",
                SettingsState.top_p.to_string(),
                rx.el.input(
                    type="range",
                    name="top_p",
                    id="top-p-input",
                    default_value=SettingsState.top_p.to_string(),
                    min=0.05,
                    max=1,
                    step=0.05,
                    class_name="range-input",
                ),
                "top-p-input",
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
                "max-tokens-input",
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
                "system-prompt-input",
            ),
            rx.cond(
                SettingsState.voices.length() > 0,  # type: ignore[attr-defined]
                _labelled(
                    "Read aloud voice",
                    "",
                    styled_select(
                        rx.el.select(
                            rx.foreach(SettingsState.voices, lambda voice: rx.el.option(voice, value=voice)),
                            name="voice",
                            id="voice-select",
                            default_value=SettingsState.voice,
                            class_name="model-select",
                        )
                    ),
                    "voice-select",
                ),
            ),
            rx.hstack(
                rx.switch(
                    name="batch",
                    default_checked=SettingsState.batch_mode,
                    id="batch-switch",
                    aria_label="Whole reply at once (no streaming)",
                ),
                rx.el.label("Whole reply at once (no streaming)", html_for="batch-switch", class_name="field-label"),
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
        styled_select(
            rx.el.select(
                rx.el.option("Use a preset…", value="", disabled=True),
                rx.foreach(SettingsState.preset_names, lambda name: rx.el.option(name, value=name)),
                value="",
                on_change=SettingsState.apply_preset,
                id="preset-select",
                aria_label="System prompt preset",
                class_name="model-select",
            )
        ),
        rx.form(
            rx.hstack(
                rx.input(
                    name="preset_name",
                    placeholder="Name this prompt",
                    size="2",
                    flex="1",
                    id="preset-name",
                    aria_label="Name for the current system prompt",
                ),
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


def _mcp_switches() -> rx.Component:
    """Each MCP server's tools, on or off for this conversation."""
    return rx.cond(
        SettingsState.mcp_switches.length() > 0,  # type: ignore[attr-defined]
        rx.vstack(
            rx.text("Tools from MCP servers", size="2", weight="medium"),
            rx.foreach(
                SettingsState.mcp_switches,
                lambda server: rx.hstack(
                    rx.switch(
                        checked=server.on & SettingsState.tools_available,
                        disabled=~SettingsState.tools_available,
                        on_change=lambda on: SettingsState.toggle_mcp(server.name, on),
                        id="mcp-" + server.name,
                        size="3",
                        custom_attrs={"data-testid": "mcp-toggle", "data-server": server.name},
                    ),
                    rx.el.label(server.name, html_for="mcp-" + server.name, class_name="field-label"),
                    align="center",
                ),
            ),
            spacing="2",
            width="100%",
        ),
    )


def settings_panel() -> rx.Component:
    return rx.popover.root(
        rx.popover.trigger(
            rx.icon_button(
                rx.icon("sliders-horizontal"),
                variant="soft",
                size="2",
                id="settings-button",
                aria_label="Conversation settings",
            )
        ),
        rx.popover.content(
            rx.vstack(
                rx.heading("Conversation settings", size="3"),
                rx.text(SettingsState.answering_label, size="1", color_scheme="gray", id="answering-label"),
                rx.cond(
                    SettingsState.settings_ready,
                    _settings_form(),
                    rx.text("Loading settings…", size="2", color_scheme="gray", id="settings-loading"),
                ),
                rx.separator(),
                _presets(),
                _mcp_switches(),
                rx.cond(
                    SettingsState.settings_notice != "",
                    rx.text(SettingsState.settings_notice, size="2", id="settings-notice"),
                ),
                spacing="3",
            ),
            width="min(22em, 92vw)",
            side="bottom",
            align="end",
            aria_label="Conversation settings",
        ),
    )
