"""Per-conversation settings: model, temperature, max tokens, top_p, system prompt, and the Read aloud voice."""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from chatbot_app.config import get_settings
from chatbot_app.services.chat_service import ConversationNotFound
from chatbot_app.services.chat_settings import (
    ChatSettings,
    check_max_tokens,
    check_preset_name,
    check_system_prompt,
    check_temperature,
    check_top_p,
    check_voice,
    model_choice,
    parse_model_choice,
    resolve,
)
from chatbot_app.services.error_messages import describe_error
from chatbot_app.services.speech import speech_voices
from chatbot_app.services.validation import InvalidInput
from chatbot_app.services.wiring import services
from chatbot_app.state.session import SessionState, state_helper


@dataclasses.dataclass
class ModelOption:
    value: str
    label: str


@dataclasses.dataclass
class ModelGroupView:
    label: str
    options: list[ModelOption]


@dataclasses.dataclass
class McpServerSwitch:
    """An MCP server as the settings panel lists it: its tools on or off for this conversation."""

    name: str
    on: bool


class SettingsState(SessionState):
    """The settings the next message is sent with; stored on the conversation."""

    model_groups: list[ModelGroupView] = []
    model_choice: str = ""
    #: The picker's models that can read images (CHATBOT_VISION_MODELS that are really offered).
    vision_choices: list[ModelOption] = []
    # Until `sync` has run, the configured defaults (not made-up ones) are what a first message asks for.
    temperature: float = get_settings().temperature
    max_tokens: int = get_settings().max_reply_tokens
    top_p: float = get_settings().top_p
    system_prompt: str = ""
    #: The voice replies are read aloud in ("" without a speech service).
    voice: str = ""
    batch_mode: bool = False
    preset_names: list[str] = []
    # Bumped whenever settings change from outside the form, so the form re-mounts with them.
    form_version: int = 0
    # False while `sync` loads them: a form shown before would lose what is typed when it re-mounts.
    settings_ready: bool = False
    settings_notice: str = ""
    _presets: dict[str, str] = {}
    #: Tools: Groq's web search on, each MCP server's switch, and whether the chosen model can use them.
    web_search: bool = False
    web_search_available: bool = False
    tools_available: bool = False
    tools_reason: str = ""
    mcp_switches: list[McpServerSwitch] = []
    #: The servers turned on, comma-separated (None: never chosen, the default ones), and every enabled
    #: server with whether it is on by default.
    _mcp_chosen: str | None = None
    _mcp_servers: list[tuple[str, bool]] = []

    @rx.var
    def vision_values(self) -> list[str]:
        return [option.value for option in self.vision_choices]

    @rx.var
    def voices(self) -> list[str]:
        """The speech service's voices, its default first (none: no Read aloud, no voice setting)."""
        return list(speech_voices(get_settings()))

    @rx.var
    def model_label(self) -> str:
        """The chosen model's name as the picker shows it."""
        return next((o.label for g in self.model_groups for o in g.options if o.value == self.model_choice), "")

    @rx.var
    def answering_label(self) -> str:
        """Which provider and model will answer, as the UI names them."""
        for group in self.model_groups:
            for option in group.options:
                if option.value == self.model_choice:
                    return f"{group.label} · {option.label}"
        return "No model available"

    @state_helper
    def chat_settings(self) -> ChatSettings:
        """What the next message is sent with (no model chosen yet: the provider's default)."""
        chat = ChatSettings(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            top_p=self.top_p,
            system_prompt=self.system_prompt or None,
            voice=self.voice or None,
            web_search=self.web_search,
            mcp_servers=self._mcp_chosen,
        )
        return chat.with_choice(self.model_choice) if self.model_choice else chat

    def _show(self, chat: ChatSettings, default_choice: str) -> None:
        service = services().chat
        resolved = resolve(chat, service.settings)
        self.model_choice = model_choice(chat.provider, chat.model) if chat.provider and chat.model else default_choice
        self.temperature, self.max_tokens, self.top_p = resolved.temperature, resolved.max_tokens, resolved.top_p
        self.system_prompt = resolved.system_prompt
        voices = speech_voices(service.settings)
        self.voice = (chat.voice if chat.voice in voices else voices[0]) if voices else ""
        self.web_search = chat.web_search
        self._mcp_chosen = chat.mcp_servers
        self.form_version += 1
        self._show_tool_availability()

    def _show_tool_availability(self) -> None:
        """What the tool switches say for the chosen model (the local model takes none, and says why)."""
        if self.model_choice:
            provider, _, model = self.model_choice.partition(":")
            availability = services().chat.tools.availability(provider, model)
            self.tools_available, self.web_search_available = availability.functions, availability.web_search
            self.tools_reason = availability.reason
        chosen = set(self._mcp_chosen.split(",")) if self._mcp_chosen is not None else None
        self.mcp_switches = [
            McpServerSwitch(name, default_on if chosen is None else name in chosen)
            for name, default_on in self._mcp_servers
        ]

    @rx.event(background=True)
    async def sync(self) -> None:
        """Load the model menu, presets, and the settings of the open (or a new) conversation."""
        service = services().chat
        async with self:
            owner, conversation_id = await self.page_owner_id(), self.conversation_id
            self.settings_ready = False
        try:
            groups, default_choice = await service.model_menu()
            presets = await service.presets(owner)
            servers = [(server.name, server.default_on) for server in await service.tools.servers() if server.enabled]
            if conversation_id:
                try:
                    chat = await service.conversation_settings(owner, conversation_id)
                except ConversationNotFound:
                    chat = ChatSettings()
            else:
                chat = await service.settings_for_new_chat(owner)
            async with self:
                self.model_groups = [
                    ModelGroupView(
                        label=g.label
                        if g.error is None
                        else f"{g.label} (unavailable: {describe_error(g.error, g.provider)})",
                        options=[ModelOption(model_choice(g.provider, m), m) for m in g.models],
                    )
                    for g in groups
                ]
                vision_models = service.settings.vision_models
                self.vision_choices = [
                    option for group in self.model_groups for option in group.options if option.label in vision_models
                ]
                self._presets = presets
                self.preset_names = list(presets)
                self._mcp_servers = servers
                self._show(chat, default_choice)
                if not any(o.value == self.model_choice for g in self.model_groups for o in g.options):
                    self.model_choice = default_choice
                    self._show_tool_availability()
                self.settings_ready = True
        except Exception:
            async with self:  # the form stays closed (it holds another page's values): say why
                self.settings_notice = "Could not load the settings. Reload the page to try again."
            raise

    async def _store(self) -> None:
        """Persist the settings on the open conversation (a new chat stores them with its first message)."""
        if self.conversation_id:
            try:
                owner = await self.owner_id()
                await services().chat.save_settings(owner, self.conversation_id, self.chat_settings())
            except ConversationNotFound:
                self.settings_notice = "This conversation no longer exists."

    @rx.event
    async def choose_model(self, value: Any) -> None:
        try:
            parse_model_choice(value)
        except InvalidInput as exc:
            self.notice = str(exc)
            return
        if not any(o.value == value for g in self.model_groups for o in g.options):
            self.notice = "That model is not available. Choose one from the list."
            return
        self.model_choice, self.notice = value, ""
        self._show_tool_availability()
        await self._store()

    @rx.event
    async def toggle_web_search(self, on: Any) -> None:
        """The composer's Web search switch, kept on the conversation."""
        await self.owner_id()  # the caller first: a tab signed out changes nothing, not even its own switch
        if not isinstance(on, bool):
            self.notice = "Web search is switched on or off, nothing else."
            return
        if on and not self.web_search_available:
            self.notice = self.tools_reason or "This model has no web search."
            return
        self.web_search, self.notice = on, ""
        await self._store()

    @rx.event
    async def toggle_mcp(self, name: Any, on: Any) -> None:
        """Turn one MCP server's tools on or off for this conversation."""
        await self.owner_id()  # the caller first, as above
        names = [switch.name for switch in self.mcp_switches]
        if not isinstance(name, str) or name not in names or not isinstance(on, bool):
            self.settings_notice = "Choose a server from the list, and switch it on or off."
            return
        chosen = {switch.name for switch in self.mcp_switches if switch.on} - {name} | ({name} if on else set())
        self._mcp_chosen = ",".join(n for n in names if n in chosen)
        self._show_tool_availability()
        self.settings_notice = ""
        await self._store()

    @rx.event
    async def apply_settings(self, form_data: Any) -> None:
        """Validate the whole form; on any bad value, say which and change nothing."""
        if not isinstance(form_data, dict):
            self.settings_notice = "Settings must come from the settings form."
            return
        try:
            temperature = check_temperature(form_data.get("temperature"))
            top_p = check_top_p(form_data.get("top_p"))
            max_tokens = check_max_tokens(form_data.get("max_tokens"))
            system_prompt = check_system_prompt(form_data.get("system_prompt", ""))
            voices = speech_voices(services().chat.settings)
            voice = check_voice(form_data.get("voice"), voices) if voices else ""
        except InvalidInput as exc:
            self.settings_notice = str(exc)
            return
        self.temperature, self.top_p, self.max_tokens, self.voice = temperature, top_p, max_tokens, voice
        self.system_prompt = system_prompt or services().chat.settings.system_prompt
        self.batch_mode = form_data.get("batch") in ("on", True, "true")
        self.settings_notice = "Saved."
        await self._store()

    @rx.event
    async def apply_preset(self, name: Any) -> None:
        if not isinstance(name, str) or name not in self._presets:
            self.settings_notice = "Choose a preset from the list."
            return
        self.system_prompt, self.settings_notice = self._presets[name], f"Using the “{name}” prompt."
        self.form_version += 1
        await self._store()

    @rx.event
    async def save_preset(self, form_data: Any) -> None:
        try:
            name = check_preset_name(form_data.get("preset_name") if isinstance(form_data, dict) else None)
        except InvalidInput as exc:
            self.settings_notice = str(exc)
            return
        await services().chat.save_preset(await self.owner_id(), name, self.system_prompt)
        self._presets[name] = self.system_prompt
        self.preset_names = list(self._presets)
        self.settings_notice = f"Saved the current prompt as “{name}”."
