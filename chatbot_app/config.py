"""One settings object, read from the environment and `.env` (the environment wins)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SYSTEM_PROMPT = "You are a helpful, concise assistant. Answer in Markdown."
PROVIDER_CHOICES = ("auto", "groq", "openai", "local")
AUTH_METHODS = ("local", "oidc")
# Groq's current models that accept images (CHATBOT_VISION_MODELS replaces the list).
GROQ_VISION_MODELS = ("meta-llama/llama-4-scout-17b-16e-instruct", "meta-llama/llama-4-maverick-17b-128e-instruct")


class SettingsError(ValueError):
    """A configuration value is malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment.

    `repr` hides the keys so that logging a Settings object never leaks them.
    """

    groq_api_key: str | None = field(default=None, repr=False)
    groq_base_url: str | None = None
    groq_models: tuple[str, ...] = ()
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_models: tuple[str, ...] = ()
    # "" for the default bundled model, "gemma3" or "smollm2" for a bundled one by name, "off" to
    # disable, or a path to any GGUF chat model (see providers/local.py).
    local_model: str = ""
    local_context_tokens: int = 2048
    local_max_waiting: int = 4
    provider: str = "auto"
    model: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float = 0.7
    top_p: float = 1.0
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'chatbot.db'}"
    context_budget_tokens: int = 6000
    max_reply_tokens: int = 1024
    frame_interval_ms: int = 50
    # The process's frame budget: past it, replies' frames are spaced further apart (up to 250 ms); 0 = fixed.
    frames_per_s: int = 600
    # Vars a streamed reply is spread over (1 = the whole text in one var: the naive pattern).
    stream_parts: int = 48
    request_timeout_s: float = 60.0
    # How provider streams are parsed: "raw" (SSE bytes + orjson) or "sdk" (the SDK's chunk objects, to compare).
    stream_parser: Literal["raw", "sdk"] = "raw"
    # The SDKs' HTTP transport: "aiohttp" (their DefaultAioHttpClient) or "httpx" (their default, to compare).
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    retry_attempts: int = 3
    max_message_chars: int = 32_000
    log_level: str = "INFO"
    # Message text in logs only when explicitly asked for (debugging on one's own machine).
    log_content: bool = False
    # --- Abuse limits (services/limits.py); README "Security" lists them all -------------------
    rate_limit_per_minute: int = 20
    # Per client address, whatever identity or key it presents: a fresh identity does not reset it.
    address_rate_limit_per_minute: int = 60
    new_identities_per_hour: int = 30
    imports_per_hour: int = 10
    max_import_bytes: int = 20 * 1024 * 1024
    # Peers (IPs or CIDRs) whose X-Forwarded-For is believed; no one's by default.
    trusted_proxies: tuple[str, ...] = ()
    max_active_replies: int = 32
    max_waiting_replies: int = 64
    # CHATBOT_REDIS_URL, defaulting to Reflex's REFLEX_REDIS_URL: when set, limits and reply logs live in
    # Redis, so that backend processes share them.
    redis_url: str | None = field(default=None, repr=False)
    # How long a finished reply's log is kept for late followers (CHATBOT_REPLY_LOG_TTL_S).
    reply_log_ttl_s: int = 300
    # A reply still `streaming` this long after its last checkpoint belongs to a dead process.
    stale_reply_s: int = 30
    # --- REST API (chatbot_app/api) -----------------------------------------------------------
    # Bearer keys the API accepts (CHATBOT_API_KEYS, comma-separated); none configured: the API answers 401.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # Browser origins (scheme://host[:port]) allowed to call the API from another site (CHATBOT_CORS_ORIGINS).
    cors_origins: tuple[str, ...] = ()
    # --- Accounts (services/accounts.py, api/auth_routes.py) ----------------------------------
    # CHATBOT_AUTH: () is "none" (the anonymous browser identity); otherwise "local", "oidc" or both.
    auth_methods: tuple[str, ...] = ()
    allow_signup: bool = True
    session_days: int = 30
    # None: unlimited; an admin may override it per user.
    daily_tokens_per_user: int | None = None
    # Where the sign-in endpoints send the browser back to: the UI's public origin.
    app_url: str = "http://localhost:3000"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    # The backend's public origin; the provider redirects to <this>/auth/oidc/callback. None: the request's own.
    oidc_redirect_base: str | None = None
    # Lower-case email domains allowed to sign in with OIDC; () allows any.
    oidc_email_domains: tuple[str, ...] = ()

    @property
    def accounts_enabled(self) -> bool:
        """Whether pages, handlers and the API need a signed-in user (any mode but "none")."""
        return bool(self.auth_methods)

    # --- Attachments and voice (services/attachments.py, services/transcription.py) --------------
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 5
    # Models that are sent images; choosing another with an image attached gets a message naming these.
    vision_models: tuple[str, ...] = GROQ_VISION_MODELS
    groq_transcription_model: str = "whisper-large-v3-turbo"
    # Speech to text on the OpenAI-compatible server (e.g. "whisper-1"); empty: not used there.
    openai_transcription_model: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, dotenv_path: Path = PROJECT_ROOT / ".env") -> Settings:
        """Build settings from `env`, or (when `env` is None) from `dotenv_path` overlaid by `os.environ`."""
        if env is None:
            env = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            env.update(os.environ)

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def integer(name: str, default: int, minimum: int) -> int:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
            if value < minimum:
                raise SettingsError(f"{name} must be at least {minimum}, got {value}")
            return value

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
            return value

        def names(name: str) -> tuple[str, ...]:
            return tuple(item.strip() for item in (text(name) or "").split(",") if item.strip())

        def choice(name: str, options: tuple[str, ...], default: str) -> str:
            value = (text(name) or default).lower()
            if value not in options:
                raise SettingsError(f"{name} must be one of {', '.join(options)}, got {value!r}")
            return value

        # --- REST API (chatbot_app/api) -------------------------------------------------------
        api_keys = names("CHATBOT_API_KEYS")
        if any(len(key) < 16 for key in api_keys):  # the message never echoes a key
            raise SettingsError("CHATBOT_API_KEYS: each key must be at least 16 characters")
        cors_origins = tuple(origin.rstrip("/") for origin in names("CHATBOT_CORS_ORIGINS"))
        if bad := [o for o in cors_origins if o != "*" and not re.fullmatch(r"https?://[^/\s]+", o)]:
            raise SettingsError(f"CHATBOT_CORS_ORIGINS: expected origins like https://example.com, got {bad[0]!r}")

        trusted_proxies = names("CHATBOT_TRUSTED_PROXIES")
        for proxy in trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise SettingsError(
                    f"CHATBOT_TRUSTED_PROXIES: expected IP addresses or networks like 10.0.0.0/8, got {proxy!r}"
                ) from None
        # --- Accounts -------------------------------------------------------------------------
        auth = (text("CHATBOT_AUTH") or "none").lower()
        auth_methods = () if auth == "none" else tuple(m.strip() for m in auth.split(","))
        if (not auth_methods and auth != "none") or any(m not in AUTH_METHODS for m in auth_methods):
            raise SettingsError(f"CHATBOT_AUTH must be none, local, oidc or local,oidc; got {auth!r}")
        oidc = {
            "issuer": text("CHATBOT_OIDC_ISSUER"),
            "client_id": text("CHATBOT_OIDC_CLIENT_ID"),
            "client_secret": text("CHATBOT_OIDC_CLIENT_SECRET"),
        }
        if "oidc" in auth_methods and (missing := [name for name, value in oidc.items() if not value]):
            names_missing = ", ".join(f"CHATBOT_OIDC_{name.upper()}" for name in missing)
            raise SettingsError(f"CHATBOT_AUTH includes oidc, so set {names_missing}")
        urls = {
            name: (text(name) or "").rstrip("/") or None for name in ("CHATBOT_APP_URL", "CHATBOT_OIDC_REDIRECT_BASE")
        }
        if bad := [name for name, url in urls.items() if url and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url)]:
            raise SettingsError(f"{bad[0]} must be a URL like https://chat.example.com")
        daily_tokens = text("CHATBOT_DAILY_TOKENS_PER_USER")

        return cls(
            groq_api_key=text("GROQ_API_KEY"),
            groq_base_url=text("GROQ_BASE_URL"),
            groq_models=names("CHATBOT_GROQ_MODELS"),
            openai_api_key=text("OPENAI_API_KEY"),
            openai_base_url=text("OPENAI_BASE_URL"),
            openai_models=names("CHATBOT_OPENAI_MODELS"),
            local_model=text("CHATBOT_LOCAL_MODEL") or "",
            local_context_tokens=integer("CHATBOT_LOCAL_CONTEXT", cls.local_context_tokens, 512),
            local_max_waiting=integer("CHATBOT_LOCAL_QUEUE", cls.local_max_waiting, 0),
            provider=choice("CHATBOT_PROVIDER", PROVIDER_CHOICES, cls.provider),
            model=text("CHATBOT_MODEL"),
            system_prompt=text("CHATBOT_SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
            temperature=number("CHATBOT_TEMPERATURE", cls.temperature, 0.0, 2.0),
            top_p=number("CHATBOT_TOP_P", cls.top_p, 0.0, 1.0),
            database_url=text("CHATBOT_DATABASE_URL") or cls.database_url,
            context_budget_tokens=integer("CHATBOT_CONTEXT_TOKENS", cls.context_budget_tokens, 256),
            max_reply_tokens=integer("CHATBOT_MAX_TOKENS", cls.max_reply_tokens, 1),
            frame_interval_ms=integer("CHATBOT_FRAME_MS", cls.frame_interval_ms, 0),
            frames_per_s=integer("CHATBOT_FRAMES_PER_S", cls.frames_per_s, 0),
            stream_parts=min(integer("CHATBOT_STREAM_PARTS", cls.stream_parts, 1), cls.stream_parts),
            stream_parser=choice("CHATBOT_STREAM_PARSER", ("raw", "sdk"), cls.stream_parser),  # type: ignore[arg-type]
            http_transport=choice("CHATBOT_HTTP_TRANSPORT", ("aiohttp", "httpx"), cls.http_transport),  # type: ignore[arg-type]
            request_timeout_s=float(integer("CHATBOT_REQUEST_TIMEOUT_S", int(cls.request_timeout_s), 1)),
            retry_attempts=integer("CHATBOT_RETRY_ATTEMPTS", cls.retry_attempts, 1),
            max_message_chars=integer("CHATBOT_MAX_MESSAGE_CHARS", cls.max_message_chars, 1),
            log_level=(text("CHATBOT_LOG_LEVEL") or cls.log_level).upper(),
            log_content=(text("CHATBOT_LOG_CONTENT") or "").lower() in ("1", "true", "yes"),
            rate_limit_per_minute=integer("CHATBOT_RATE_LIMIT_PER_MINUTE", cls.rate_limit_per_minute, 1),
            address_rate_limit_per_minute=integer(
                "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE", cls.address_rate_limit_per_minute, 1
            ),
            new_identities_per_hour=integer("CHATBOT_NEW_IDENTITIES_PER_HOUR", cls.new_identities_per_hour, 1),
            imports_per_hour=integer("CHATBOT_IMPORTS_PER_HOUR", cls.imports_per_hour, 1),
            max_import_bytes=integer("CHATBOT_MAX_IMPORT_BYTES", cls.max_import_bytes, 1024),
            trusted_proxies=trusted_proxies,
            max_active_replies=integer("CHATBOT_MAX_ACTIVE_REPLIES", cls.max_active_replies, 1),
            max_waiting_replies=integer("CHATBOT_MAX_WAITING_REPLIES", cls.max_waiting_replies, 0),
            redis_url=text("CHATBOT_REDIS_URL") or text("REFLEX_REDIS_URL"),
            reply_log_ttl_s=integer("CHATBOT_REPLY_LOG_TTL_S", cls.reply_log_ttl_s, 1),
            stale_reply_s=integer("CHATBOT_STALE_REPLY_S", cls.stale_reply_s, 1),
            api_keys=api_keys,  # REST API
            cors_origins=cors_origins,  # REST API
            auth_methods=auth_methods,
            allow_signup=(text("CHATBOT_ALLOW_SIGNUP") or "true").lower() in ("1", "true", "yes"),
            session_days=integer("CHATBOT_SESSION_DAYS", cls.session_days, 1),
            daily_tokens_per_user=None
            if daily_tokens in (None, "unlimited")
            else integer("CHATBOT_DAILY_TOKENS_PER_USER", 0, 0),
            app_url=urls["CHATBOT_APP_URL"] or cls.app_url,
            oidc_issuer=oidc["issuer"],  # as the provider spells it: it must equal the tokens' `iss`
            oidc_client_id=oidc["client_id"],
            oidc_client_secret=oidc["client_secret"],
            oidc_redirect_base=urls["CHATBOT_OIDC_REDIRECT_BASE"],
            oidc_email_domains=tuple(d.lower().lstrip("@") for d in names("CHATBOT_OIDC_EMAIL_DOMAINS")),
            max_attachment_bytes=integer("CHATBOT_MAX_ATTACHMENT_BYTES", cls.max_attachment_bytes, 1),
            max_attachments=integer("CHATBOT_MAX_ATTACHMENTS", cls.max_attachments, 0),
            vision_models=names("CHATBOT_VISION_MODELS") or cls.vision_models,
            groq_transcription_model=text("CHATBOT_GROQ_TRANSCRIPTION_MODEL") or cls.groq_transcription_model,
            openai_transcription_model=text("CHATBOT_OPENAI_TRANSCRIPTION_MODEL"),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
