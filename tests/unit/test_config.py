"""load_settings and Settings: defaults, each variable, malformed values, secrets, and `.env` precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot_app.config import DEFAULT_SYSTEM_PROMPT, PROJECT_ROOT, Settings, SettingsError, load_settings

SECRET = "gsk_live_" + "s3cr3t" * 6
VARIABLES = (
    "GROQ_API_KEY",
    "GROQ_BASE_URL",
    "CHATBOT_PROVIDER",
    "CHATBOT_MODEL",
    "CHATBOT_SYSTEM_PROMPT",
    "CHATBOT_DATABASE_URL",
    "CHATBOT_CONTEXT_TOKENS",
    "CHATBOT_MAX_TOKENS",
    "CHATBOT_FRAME_MS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CHATBOT_GROQ_MODELS",
    "CHATBOT_OPENAI_MODELS",
    "CHATBOT_LOCAL_MODEL",
    "CHATBOT_LOCAL_CONTEXT",
    "CHATBOT_LOCAL_QUEUE",
    "CHATBOT_TEMPERATURE",
    "CHATBOT_TOP_P",
    "CHATBOT_REQUEST_TIMEOUT_S",
)
OPENAI_SECRET = "sk-proj-" + "0p3n" * 8


def test_an_empty_environment_gives_the_defaults() -> None:
    settings = load_settings({})

    assert settings == Settings()
    assert settings.groq_api_key is None
    assert settings.groq_base_url is None
    assert settings.provider == "auto"
    assert settings.model is None
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'chatbot.db'}"
    assert (settings.context_budget_tokens, settings.max_reply_tokens, settings.frame_interval_ms) == (6000, 1024, 50)
    assert (settings.openai_api_key, settings.openai_base_url) == (None, None)
    assert (settings.groq_models, settings.openai_models) == ((), ())
    assert settings.local_model == ""  # the bundled SmolLM2
    assert (settings.local_context_tokens, settings.local_max_waiting) == (2048, 4)
    assert (settings.temperature, settings.top_p, settings.request_timeout_s) == (0.7, 1.0, 60.0)


def test_blank_values_count_as_unset() -> None:
    assert load_settings({name: "   " for name in VARIABLES}) == Settings()


def test_every_variable_is_read() -> None:
    settings = load_settings(
        {
            "GROQ_API_KEY": SECRET,
            "GROQ_BASE_URL": "http://127.0.0.1:9999",
            "CHATBOT_PROVIDER": "groq",
            "CHATBOT_MODEL": "llama-test",
            "CHATBOT_SYSTEM_PROMPT": "Answer in French.",
            "CHATBOT_DATABASE_URL": "postgresql+psycopg2://u@db/chat",
            "CHATBOT_CONTEXT_TOKENS": "8000",
            "CHATBOT_MAX_TOKENS": "256",
            "CHATBOT_FRAME_MS": "0",
            "OPENAI_API_KEY": OPENAI_SECRET,
            "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
            "CHATBOT_GROQ_MODELS": "llama-a,llama-b",
            "CHATBOT_OPENAI_MODELS": "gpt-a",
            "CHATBOT_LOCAL_MODEL": "/models/tiny.gguf",
            "CHATBOT_LOCAL_CONTEXT": "4096",
            "CHATBOT_LOCAL_QUEUE": "0",
            "CHATBOT_TEMPERATURE": "0.2",
            "CHATBOT_TOP_P": "0.95",
            "CHATBOT_REQUEST_TIMEOUT_S": "15",
        }
    )

    assert settings == Settings(
        groq_api_key=SECRET,
        groq_base_url="http://127.0.0.1:9999",
        provider="groq",
        model="llama-test",
        system_prompt="Answer in French.",
        database_url="postgresql+psycopg2://u@db/chat",
        context_budget_tokens=8000,
        max_reply_tokens=256,
        frame_interval_ms=0,
        openai_api_key=OPENAI_SECRET,
        openai_base_url="http://127.0.0.1:11434/v1",
        groq_models=("llama-a", "llama-b"),
        openai_models=("gpt-a",),
        local_model="/models/tiny.gguf",
        local_context_tokens=4096,
        local_max_waiting=0,
        temperature=0.2,
        top_p=0.95,
        request_timeout_s=15.0,
    )


def test_values_are_stripped_and_the_provider_is_case_insensitive() -> None:
    settings = load_settings({"CHATBOT_PROVIDER": " GROQ ", "CHATBOT_MODEL": " m \n", "CHATBOT_MAX_TOKENS": " 7 "})

    assert (settings.provider, settings.model, settings.max_reply_tokens) == ("groq", "m", 7)


WHOLE_NUMBERS = (
    "CHATBOT_CONTEXT_TOKENS",
    "CHATBOT_MAX_TOKENS",
    "CHATBOT_FRAME_MS",
    "CHATBOT_LOCAL_CONTEXT",
    "CHATBOT_LOCAL_QUEUE",
)


@pytest.mark.parametrize("name", WHOLE_NUMBERS)
@pytest.mark.parametrize("raw", ["many", "1.5", "1e3", "0x10"])
def test_a_malformed_whole_number_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be a whole number, got '{raw}'$"):
        load_settings({name: raw})


@pytest.mark.parametrize(
    ("name", "raw", "minimum"),
    [
        ("CHATBOT_CONTEXT_TOKENS", "255", 256),
        ("CHATBOT_MAX_TOKENS", "0", 1),
        ("CHATBOT_FRAME_MS", "-1", 0),
        ("CHATBOT_LOCAL_CONTEXT", "511", 512),
        ("CHATBOT_LOCAL_QUEUE", "-1", 0),
        ("CHATBOT_REQUEST_TIMEOUT_S", "0", 1),
    ],
)
def test_a_number_below_its_minimum_names_its_variable(name: str, raw: str, minimum: int) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be at least {minimum}, got {raw}$"):
        load_settings({name: raw})


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        ("CHATBOT_LOCAL_CONTEXT", "512", "local_context_tokens", 512),
        ("CHATBOT_LOCAL_QUEUE", "0", "local_max_waiting", 0),
        ("CHATBOT_REQUEST_TIMEOUT_S", "1", "request_timeout_s", 1.0),
    ],
)
def test_a_whole_number_at_its_minimum_is_accepted(name: str, raw: str, attribute: str, expected: float) -> None:
    assert getattr(load_settings({name: raw}), attribute) == expected


def test_the_request_timeout_is_a_number_of_seconds() -> None:
    timeout = load_settings({"CHATBOT_REQUEST_TIMEOUT_S": "30"}).request_timeout_s

    assert (timeout, type(timeout)) == (30.0, float)
    assert load_settings({"CHATBOT_REQUEST_TIMEOUT_S": "2.5"}).request_timeout_s == 2.5
    with pytest.raises(SettingsError, match=r"^CHATBOT_REQUEST_TIMEOUT_S must be a number, got 'soon'$"):
        load_settings({"CHATBOT_REQUEST_TIMEOUT_S": "soon"})


@pytest.mark.parametrize(
    ("name", "attribute", "low", "high"),
    [("CHATBOT_TEMPERATURE", "temperature", 0.0, 2.0), ("CHATBOT_TOP_P", "top_p", 0.0, 1.0)],
)
def test_a_sampling_number_is_read_up_to_its_limits(name: str, attribute: str, low: float, high: float) -> None:
    for raw, expected in ((str(low), low), (" 0.5 ", 0.5), (str(high), high), ("1e-1", 0.1)):
        assert getattr(load_settings({name: raw}), attribute) == expected


@pytest.mark.parametrize(
    ("name", "raw", "shown"),
    [
        ("CHATBOT_TEMPERATURE", "2.5", "2.5"),
        ("CHATBOT_TEMPERATURE", "-0.1", "-0.1"),
        ("CHATBOT_TEMPERATURE", "nan", "nan"),
        ("CHATBOT_TEMPERATURE", "inf", "inf"),
        ("CHATBOT_TOP_P", "1.01", "1.01"),
        ("CHATBOT_TOP_P", "-1", "-1"),
    ],
)
def test_a_sampling_number_out_of_range_names_its_variable_and_range(name: str, raw: str, shown: str) -> None:
    high = 2 if name == "CHATBOT_TEMPERATURE" else 1
    with pytest.raises(SettingsError, match=f"^{name} must be between 0 and {high}, got {shown}$"):
        load_settings({name: raw})


@pytest.mark.parametrize("name", ["CHATBOT_TEMPERATURE", "CHATBOT_TOP_P"])
@pytest.mark.parametrize("raw", ["warm", "0,5", "1/2"])
def test_a_malformed_sampling_number_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be a number, got '{raw}'$"):
        load_settings({name: raw})


@pytest.mark.parametrize(
    ("name", "attribute"), [("CHATBOT_GROQ_MODELS", "groq_models"), ("CHATBOT_OPENAI_MODELS", "openai_models")]
)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("one", ("one",)),
        ("one,two", ("one", "two")),
        (" one , two ,, three, ", ("one", "two", "three")),
        (",,", ()),
        ("", ()),
    ],
)
def test_a_model_list_is_a_comma_separated_list(name: str, attribute: str, raw: str, expected: tuple[str, ...]) -> None:
    assert getattr(load_settings({name: raw}), attribute) == expected


@pytest.mark.parametrize(("raw", "expected"), [("off", "off"), (" ~/models/m.gguf ", "~/models/m.gguf"), ("", "")])
def test_the_local_model_is_off_a_path_or_empty_for_the_bundled_one(raw: str, expected: str) -> None:
    assert load_settings({"CHATBOT_LOCAL_MODEL": raw}).local_model == expected


def test_an_unknown_provider_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError, match="CHATBOT_PROVIDER must be one of auto, groq, openai, local, got 'gemini'"):
        load_settings({"CHATBOT_PROVIDER": "gemini"})


@pytest.mark.parametrize(
    ("name", "attribute", "default", "other"),
    [
        ("CHATBOT_STREAM_PARSER", "stream_parser", "raw", "sdk"),
        ("CHATBOT_HTTP_TRANSPORT", "http_transport", "aiohttp", "httpx"),
    ],
)
def test_stream_reading_choices_default_to_the_fast_path_and_refuse_others(
    name: str, attribute: str, default: str, other: str
) -> None:
    assert getattr(load_settings({}), attribute) == default
    assert getattr(load_settings({name: other.upper()}), attribute) == other
    with pytest.raises(SettingsError, match=f"{name} must be one of {default}, {other}, got 'curl'"):
        load_settings({name: "curl"})


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_the_api_key_never_appears_in_repr_or_str() -> None:
    settings = load_settings({"GROQ_API_KEY": SECRET, "CHATBOT_MODEL": "visible-model"})

    assert settings.groq_api_key == SECRET
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert SECRET not in shown
        assert "groq_api_key" not in shown
    assert "visible-model" in repr(settings)


def test_the_openai_key_never_appears_in_repr_or_str() -> None:
    settings = load_settings({"OPENAI_API_KEY": OPENAI_SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"})

    assert settings.openai_api_key == OPENAI_SECRET
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert OPENAI_SECRET not in shown
        assert "openai_api_key" not in shown
    assert "http://127.0.0.1:8080/v1" in repr(settings)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ without any of the app's variables, whatever the machine running the tests has set."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_environment_wins_over_dotenv(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"GROQ_API_KEY={SECRET}\nCHATBOT_MODEL=model-from-dotenv\nCHATBOT_MAX_TOKENS=111\n# a comment\n",
        encoding="utf-8",
    )
    clean_environ.setenv("CHATBOT_MODEL", "model-from-environment")
    clean_environ.setenv("CHATBOT_FRAME_MS", "25")

    settings = load_settings(env_file=dotenv)

    assert settings.model == "model-from-environment"  # set in both: the environment wins
    assert settings.groq_api_key == SECRET  # only in .env
    assert settings.max_reply_tokens == 111  # only in .env
    assert settings.frame_interval_ms == 25  # only in the environment


def test_a_malformed_value_in_dotenv_is_reported_like_one_in_the_environment(
    tmp_path: Path, clean_environ: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("CHATBOT_CONTEXT_TOKENS=lots\n", encoding="utf-8")

    with pytest.raises(SettingsError, match="CHATBOT_CONTEXT_TOKENS"):
        load_settings(env_file=dotenv)


def test_a_missing_dotenv_file_means_the_environment_alone(tmp_path: Path, clean_environ: pytest.MonkeyPatch) -> None:
    clean_environ.setenv("CHATBOT_MODEL", "only-env")

    settings = load_settings(env_file=tmp_path / "absent.env")

    assert settings.model == "only-env"
    assert settings.groq_api_key is None


def test_an_explicit_mapping_ignores_dotenv_and_the_environment(
    tmp_path: Path, clean_environ: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("CHATBOT_MODEL=from-dotenv\n", encoding="utf-8")
    clean_environ.setenv("CHATBOT_MODEL", "from-environment")

    assert load_settings({}, env_file=dotenv).model is None


# --- Accounts -------------------------------------------------------------------------------------

OIDC_ENV = {
    "CHATBOT_OIDC_ISSUER": "https://accounts.google.com",
    "CHATBOT_OIDC_CLIENT_ID": "client-id",
    "CHATBOT_OIDC_CLIENT_SECRET": "oidc-" + SECRET,
}


def test_accounts_are_off_by_default() -> None:
    settings = load_settings({})
    # Sign-up closed but for the first account (its admin); `make run` has no accounts at all.
    assert (settings.auth_methods, settings.accounts_enabled, settings.allow_signup) == ((), False, False)
    assert (settings.signups_per_address_per_hour, settings.signups_per_hour) == (10, 100)
    assert (settings.session_days, settings.daily_tokens_per_user) == (30, None)


@pytest.mark.parametrize(
    ("raw", "methods"),
    [("none", ()), ("local", ("local",)), ("OIDC", ("oidc",)), ("local, oidc", ("local", "oidc"))],
)
def test_auth_modes(raw: str, methods: tuple[str, ...]) -> None:
    settings = load_settings({"CHATBOT_AUTH": raw, **OIDC_ENV})
    assert settings.auth_methods == methods and settings.accounts_enabled is bool(methods)


@pytest.mark.parametrize("raw", ["ldap", "local,", "none,local", "yes"])
def test_an_unknown_auth_mode_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"^CHATBOT_AUTH must be none, local, oidc or local,oidc"):
        load_settings({"CHATBOT_AUTH": raw})


def test_oidc_needs_its_issuer_and_client() -> None:
    with pytest.raises(SettingsError, match=r"CHATBOT_OIDC_CLIENT_ID, CHATBOT_OIDC_CLIENT_SECRET$"):
        load_settings({"CHATBOT_AUTH": "oidc", "CHATBOT_OIDC_ISSUER": "https://idp.example"})


def test_account_settings_are_read_and_the_oidc_secret_is_hidden() -> None:
    settings = load_settings(
        {
            "CHATBOT_AUTH": "local,oidc",
            "CHATBOT_ALLOW_SIGNUP": "false",
            "CHATBOT_SESSION_DAYS": "7",
            "CHATBOT_DAILY_TOKENS_PER_USER": "50000",
            "CHATBOT_APP_URL": "https://chat.example.com/",
            "CHATBOT_OIDC_REDIRECT_BASE": "https://api.chat.example.com",
            "CHATBOT_OIDC_EMAIL_DOMAINS": "Example.com, @corp.example",
            **OIDC_ENV,
        }
    )
    assert (settings.allow_signup, settings.session_days, settings.daily_tokens_per_user) == (False, 7, 50000)
    assert settings.app_url == "https://chat.example.com"
    assert settings.oidc_email_domains == ("example.com", "corp.example")
    assert "oidc-" + SECRET not in repr(settings)


@pytest.mark.parametrize("name", ["CHATBOT_APP_URL", "CHATBOT_OIDC_REDIRECT_BASE"])
def test_a_malformed_url_is_refused(name: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} must be a URL"):
        load_settings({name: "chat.example.com"})


def test_abuse_limit_settings_are_read_and_checked() -> None:
    from chatbot_app.config import SettingsError

    settings = load_settings(
        {
            "CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE": "10",
            "CHATBOT_NEW_IDENTITIES_PER_HOUR": "5",
            "CHATBOT_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
            "CHATBOT_MAX_IMPORT_BYTES": "4096",
            "CHATBOT_REDIS_URL": "redis://127.0.0.1:6379/2",
        }
    )
    defaults = load_settings({})

    assert (settings.address_rate_limit_per_minute, settings.new_identities_per_hour) == (10, 5)
    assert settings.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert settings.max_import_bytes == 4096 and settings.redis_url == "redis://127.0.0.1:6379/2"
    assert (defaults.address_rate_limit_per_minute, defaults.new_identities_per_hour) == (60, 30)
    assert defaults.max_import_bytes == 20 * 2**20
    with pytest.raises(SettingsError, match="CHATBOT_TRUSTED_PROXIES"):
        load_settings({"CHATBOT_TRUSTED_PROXIES": "not-an-ip"})


def test_the_product_name_is_read_and_defaults_to_a_plain_one() -> None:
    assert load_settings({}).app_name == "Chatbot"
    assert load_settings({"CHATBOT_APP_NAME": "  Acme Assistant "}).app_name == "Acme Assistant"
    with pytest.raises(SettingsError, match=r"^CHATBOT_APP_NAME must be at most 60 characters$"):
        load_settings({"CHATBOT_APP_NAME": "x" * 500})


def test_file_check_budgets_upload_rate_and_export_links_are_read() -> None:
    key = "export-" + "k" * 40
    settings = load_settings(
        {
            "CHATBOT_MAX_IMAGE_PIXELS": "1000000",
            "CHATBOT_MAX_PDF_PAGES": "20",
            "CHATBOT_MAX_FILE_TEXT_CHARS": "5000",
            "CHATBOT_FILE_CHECK_CPU_S": "2",
            "CHATBOT_FILE_CHECK_MEMORY_MIB": "512",
            "CHATBOT_FILE_CHECK_WORKERS": "3",
            "CHATBOT_FILE_CHECK_QUEUE": "0",
            "CHATBOT_UPLOADS_PER_MINUTE": "12",
            "CHATBOT_SECRET_KEY": key,
            "CHATBOT_EXPORT_LINK_TTL_S": "60",
        }
    )

    assert settings == Settings(
        max_image_pixels=1_000_000,
        max_pdf_pages=20,
        max_file_text_chars=5000,
        file_check_cpu_s=2,
        file_check_memory_mib=512,
        file_check_workers=3,
        file_check_queue=0,
        uploads_per_minute=12,
        secret_key=key,
        export_link_ttl_s=60,
    )
    assert key not in repr(settings)
    assert load_settings({}).file_check_workers is None  # one per core beyond the first, at least one
    with pytest.raises(SettingsError, match=r"^CHATBOT_SECRET_KEY must be at least 32 characters") as caught:
        load_settings({"CHATBOT_SECRET_KEY": "short-secret"})
    assert "short-secret" not in str(caught.value)
    with pytest.raises(SettingsError, match="CHATBOT_FILE_CHECK_CPU_S must be at least 1"):
        load_settings({"CHATBOT_FILE_CHECK_CPU_S": "0"})


def test_settings_built_in_code_never_read_the_environment_or_dotenv(
    tmp_path: Path, clean_environ: pytest.MonkeyPatch
) -> None:
    """A developer's own .env or shell must never reach a test that builds its settings."""
    clean_environ.setenv("CHATBOT_MODEL", "from-environment")
    clean_environ.setenv("GROQ_API_KEY", SECRET)

    built = Settings(max_reply_tokens=7)

    assert (built.model, built.groq_api_key, built.max_reply_tokens) == (None, None, 7)
    assert load_settings().model == "from-environment"  # reading them is load_settings' job


def test_a_wrong_value_stops_the_start_with_one_line() -> None:
    """Every reflex command loads rxconfig.py first; a wrong value ends it there, in one line on stderr."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CHATBOT_MAX_TOKENS": "lots"}
    started = subprocess.run(
        [sys.executable, "-c", "import rxconfig"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert started.returncode == 1
    assert started.stderr == "chatbot_app: CHATBOT_MAX_TOKENS must be a whole number, got 'lots'\n"
