"""With accounts on: a phone (390 x 844) reaches everything; every page passes axe-core in light and dark
mode; React's development build warns about nothing on any page; and the chat's screenshots for docs/.

One app for the module, exported with React's development bundle (its console warnings are the check).
Set CHATBOT_UPDATE_SCREENSHOTS=1 to write the screenshots into docs/screenshots/ (otherwise a temp dir).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from chatbot_app.config import PROJECT_ROOT, Settings
from chatbot_app.services.accounts import Accounts
from chatbot_app.storage.database import make_engine
from tests.e2e.accessibility import blocking_violations
from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
ADMIN, MEMBER = "root@example.com", "member@example.com"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
#: A reply with a little of everything, for the pages' checks and the screenshots.
SHOWCASE = (
    "Here is a **palindrome** check, with a test:\n\n```python\ndef is_palindrome(text: str) -> bool:\n"
    "    letters = [c.lower() for c in text if c.isalnum()]\n    return letters == letters[::-1]\n\n\n"
    'assert is_palindrome("A man, a plan, a canal: Panama")\n```\n\n| Input | Result |\n|---|---|\n'
    "| `racecar` | True |\n| `chatbot` | False |\n\nIt ignores case and punctuation. From a shell:\n\n"
    '```bash\nfor word in racecar chatbot; do echo "$word" | rev; done\n```'
)


@pytest.fixture(scope="module")
def phone_app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    def make_users(database_url: str) -> None:
        engine = make_engine(database_url)
        # Sign-up open for this setup only: the app itself keeps its default.
        settings = Settings(database_url=database_url, auth_methods=("local",), allow_signup=True)
        accounts = Accounts(settings, engine)

        async def sign_up() -> None:
            await accounts.sign_up(ADMIN, PASSWORD)  # the first account is the admin
            await accounts.sign_up(MEMBER, PASSWORD)

        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, sign_up()).result(timeout=120)
        engine.dispose()

    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "phone_app",
        make_users,
        development=True,
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_AUTH="local",
        CHATBOT_NEW_IDENTITIES_PER_HOUR="100000",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
    ) as running:
        yield running


#: What React's development bundle says when it hydrates React Router's default "Loading..." fallback, which
#: renders a <script>: only on an address with no page of its own in the static export (/s/<token>, /c/<id>,
#: unknown ones), which the host answers with that fallback (404.html). Reflex writes the root that holds it;
#: the production bundle reports nothing there (test_everyday_ui_in_browser.py checks that).
SPA_FALLBACK_HYDRATION = (
    "Encountered a script tag while rendering React component",
    "Hydration failed because the server rendered HTML didn't match the client",
)
#: The addresses the export has a page of its own for (hydrated from their own HTML: nothing is excused there).
PRERENDERED = {"", "/login", "/signup", "/account", "/admin"}


class Console:
    """Every warning and error a page writes to the console (React's development warnings among them)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def watch(self, page: Any) -> None:
        def message(m: Any) -> None:
            if m.type in ("warning", "error"):
                self._add(page.url, f"{m.type}: {m.text}")

        page.on("console", message)
        page.on("pageerror", lambda error: self._add(page.url, f"pageerror: {error}"))

    def _add(self, url: str, text: str) -> None:
        from_fallback = urlsplit(url).path.rstrip("/") not in PRERENDERED
        if not (from_fallback and any(known in text for known in SPA_FALLBACK_HYDRATION)):
            self.lines.append(f"{url}: {text}")


def signed_in(browser: Any, app: LiveApp, email: str, viewport: dict[str, int], **context: Any) -> Any:
    page = browser.new_context(viewport=viewport, **context).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{app.frontend_url}/login")
    page.fill("#email-input", email)
    page.fill("#password-input", PASSWORD)
    page.click("#sign-in-button")
    page.wait_for_url(re.compile(re.escape(app.frontend_url) + "/?$"))
    page.wait_for_selector("#user-menu")
    return page


def on_screen_and_tappable(page: Any, selector: str) -> str:
    """ "" if the element is wholly on screen, at least 24 px each way, and a tap at its centre reaches it."""
    return page.evaluate(
        """(selector) => {
          const e = document.querySelector(selector);
          if (!e) return 'missing';
          const r = e.getBoundingClientRect();
          if (r.width < 24 || r.height < 24) return `too small: ${r.width}x${r.height}`;
          if (r.left < 0 || r.top < 0 || r.right > innerWidth || r.bottom > innerHeight) return 'off screen';
          const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
          return e === hit || e.contains(hit) ? '' : `covered by ${hit && (hit.id || hit.className || hit.tagName)}`;
        }""",
        selector,
    )


def no_sideways_scroll(page: Any) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# -- a phone ------------------------------------------------------------------------------------


def test_every_header_control_is_on_screen_and_tappable_on_a_phone(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp, fake: FakeLLMServer
) -> None:
    page = signed_in(browser, phone_app, MEMBER, PHONE, has_touch=True, is_mobile=True)
    fake.enqueue_batch(
        Behaviour(text="A rather long conversation title that will not fit a phone", for_prompt="Hello from a phone")
    )
    send(page, "Hello from a phone")
    wait_for_replies(page, 1)
    page.wait_for_selector("#conversation-title:has-text('A rather long')")
    for control in ("#sidebar-toggle", "#model-select", "#settings-button", "#conversation-menu", "#new-chat-button"):
        assert on_screen_and_tappable(page, control) == "", control
    assert on_screen_and_tappable(page, "#user-menu") == ""
    assert no_sideways_scroll(page)
    page.tap("#sidebar-toggle")  # the tap reaches the button, not the model picker
    page.wait_for_selector("#sidebar.open")
    page.context.close()


def test_the_drawer_has_a_backdrop_closes_on_choice_and_escape_and_leaves_the_tab_order(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp, fake: FakeLLMServer
) -> None:
    page = signed_in(browser, phone_app, MEMBER, PHONE, has_touch=True, is_mobile=True)
    send(page, "A conversation to come back to")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)
    page.tap("#new-chat-button")
    page.wait_for_url(re.compile(r"/$"), wait_until="commit")

    def closed() -> bool:
        return page.evaluate("getComputedStyle(document.getElementById('sidebar')).visibility") == "hidden"

    page.wait_for_function("getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'")
    page.locator("#search-input").focus()  # hidden: it cannot take the focus
    assert page.evaluate("document.activeElement.id") != "search-input"

    page.tap("#sidebar-toggle")
    page.wait_for_selector(".sidebar-backdrop")
    page.wait_for_function("document.getElementById('sidebar').getBoundingClientRect().left === 0")  # slid in
    assert on_screen_and_tappable(page, "#sidebar-close") == ""
    page.locator("[data-testid=conversation-item] .conversation-link").first.tap()  # choosing one closes it
    page.wait_for_url(url)
    page.wait_for_selector(".sidebar-backdrop", state="detached")
    page.wait_for_function("getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'")

    page.tap("#sidebar-toggle")
    page.wait_for_selector(".sidebar-backdrop")
    page.keyboard.press("Escape")
    page.wait_for_selector(".sidebar-backdrop", state="detached")

    page.tap("#sidebar-toggle")
    page.wait_for_selector(".sidebar-backdrop")
    page.mouse.click(PHONE["width"] - 10, PHONE["height"] // 2)  # the backdrop, beside the drawer
    page.wait_for_selector(".sidebar-backdrop", state="detached")
    page.wait_for_function("getComputedStyle(document.getElementById('sidebar')).visibility === 'hidden'")
    assert closed()
    page.context.close()


def test_settings_the_menu_and_the_account_page_work_on_a_phone(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp
) -> None:
    page = signed_in(browser, phone_app, MEMBER, PHONE, has_touch=True, is_mobile=True)
    page.tap("#settings-button")
    page.wait_for_selector("#apply-settings")
    assert on_screen_and_tappable(page, "#apply-settings") == ""
    page.fill("#max-tokens-input", "500")
    page.tap("#apply-settings")
    page.wait_for_selector("#settings-notice:has-text('Saved.')")
    page.keyboard.press("Escape")

    page.tap("#conversation-menu")
    page.wait_for_selector("#color-mode-item")
    assert on_screen_and_tappable(page, "#color-mode-item") == ""
    page.tap("#color-mode-item")
    page.wait_for_function("document.documentElement.classList.contains('dark')")
    page.wait_for_selector("[role=menu]", state="detached")

    page.tap("#user-menu")
    page.locator("#account-link").wait_for()
    page.locator("#account-link").tap()
    page.wait_for_selector("#create-api-key-button")
    page.fill("#api-key-name", "phone")
    page.tap("#create-api-key-button")
    page.wait_for_function("document.querySelector('#new-api-key').value.startsWith('cbk_')")
    assert no_sideways_scroll(page)
    page.context.close()


def test_the_admin_page_works_on_a_phone_asks_first_and_keeps_the_last_admin(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp
) -> None:
    page = signed_in(browser, phone_app, ADMIN, PHONE, has_touch=True, is_mobile=True)
    page.goto(f"{phone_app.frontend_url}/admin")
    member = page.locator(f".user-row[data-email='{MEMBER}']")
    member.wait_for()
    assert no_sideways_scroll(page)

    # The only admin: "Disable" and "Remove admin" are disabled, and the page says why.
    me = page.locator(f".user-row[data-email='{ADMIN}']")
    assert me.locator(".toggle-disabled-button").is_disabled()
    assert me.locator(".toggle-admin-button").is_disabled()
    assert "only admin" in me.locator(".last-admin-note").inner_text()

    # Every action asks first; "Cancel" changes nothing.
    member.locator(".toggle-disabled-button").tap()
    page.wait_for_selector("#confirm-admin-action")
    assert MEMBER in page.get_by_role("alertdialog").inner_text()
    page.tap("#cancel-admin-action")
    page.wait_for_selector("#confirm-admin-action", state="detached")
    assert member.locator(".user-status").inner_text() == "active"
    member.locator(".toggle-disabled-button").tap()
    page.tap("#confirm-admin-action")
    page.wait_for_selector(f".user-row[data-email='{MEMBER}'] .user-status:has-text('disabled')")
    member.locator(".toggle-disabled-button").tap()
    page.tap("#confirm-admin-action")
    page.wait_for_selector(f".user-row[data-email='{MEMBER}'] .user-status:has-text('active')")
    page.context.close()


def test_a_failed_sign_in_keeps_the_email_and_puts_the_cursor_in_the_password(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp
) -> None:
    page = browser.new_context(viewport=PHONE).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{phone_app.frontend_url}/login")
    page.fill("#email-input", MEMBER)
    page.fill("#password-input", "not the password")
    page.click("#sign-in-button")
    page.wait_for_selector('[data-testid="auth-error"]')
    page.wait_for_function(f"document.querySelector('#email-input').value === {MEMBER!r}")
    page.wait_for_function("document.activeElement.id === 'password-input'")
    assert page.input_value("#password-input") == ""
    assert "member" not in page.url and "example.com" not in page.url  # nothing of it in the address
    page.context.close()


# -- accessibility, console warnings, screenshots ------------------------------------------------


def shared_link(page: Any) -> str:
    page.click("#conversation-menu")
    page.click("#share-button")
    page.wait_for_function("document.querySelector('#share-link').value.includes('/s/')")
    page.wait_for_selector("[role=menu]", state="detached")  # the menu has finished closing
    return page.input_value("#share-link")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_axe_and_react_warns_about_nothing(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp, fake: FakeLLMServer, scheme: str
) -> None:
    console = Console()
    page = browser.new_context(viewport=DESKTOP, color_scheme=scheme).new_page()
    page.set_default_timeout(20_000)
    console.watch(page)
    found: dict[str, list[str]] = {}

    page.goto(f"{phone_app.frontend_url}/login")
    page.wait_for_selector("#sign-in-button")
    found["sign-in"] = blocking_violations(page)
    page.fill("#email-input", ADMIN)
    page.fill("#password-input", PASSWORD)
    page.click("#sign-in-button")
    page.wait_for_selector("#user-menu")

    found["new chat"] = blocking_violations(page)
    fake.enqueue_stream(Behaviour(text=SHOWCASE, tokens_per_s=200))
    send(page, "Write a palindrome check in Python")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    found["chat"] = blocking_violations(page)
    link = shared_link(page)
    found["chat, share panel open"] = blocking_violations(page)
    page.click("#settings-button")
    page.wait_for_selector("#apply-settings")
    found["settings"] = blocking_violations(page)
    page.keyboard.press("Escape")

    page.goto(f"{phone_app.frontend_url}/account")
    page.wait_for_selector("#create-api-key-button")
    page.wait_for_selector("[data-testid=share-link-row]")  # the link just made, listed to copy or revoke
    found["account"] = blocking_violations(page)
    page.goto(f"{phone_app.frontend_url}/admin")
    page.wait_for_selector(".user-row")
    found["admin"] = blocking_violations(page)
    page.goto(link)
    page.wait_for_selector("#shared-title")
    found["share"] = blocking_violations(page)
    page.goto(f"{phone_app.frontend_url}/no/such/page")
    page.wait_for_selector("#not-found")
    found["not found"] = blocking_violations(page)

    problems = "\n".join(f"{name}: {problem}" for name, lines in found.items() for problem in lines)
    assert problems == ""
    assert "\n".join(console.lines) == ""
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_screenshots_of_the_chat(  # type: ignore[no-untyped-def]
    browser, phone_app: LiveApp, fake: FakeLLMServer, tmp_path: Path, device: str, scheme: str
) -> None:
    viewport = DESKTOP if device == "desktop" else PHONE
    page = signed_in(browser, phone_app, ADMIN, viewport, color_scheme=scheme, is_mobile=device == "phone")
    fake.enqueue_batch(Behaviour(text="Palindromes in Python", for_prompt="palindrome check"))
    fake.enqueue_stream(Behaviour(text=SHOWCASE, tokens_per_s=400))
    send(page, "Write a palindrome check in Python, with a test.")
    wait_for_replies(page, 1)
    page.wait_for_selector("#conversation-title:has-text('Palindromes')")
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement.blur()")
    assert no_sideways_scroll(page)
    folder = SCREENSHOTS if os.environ.get("CHATBOT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"chat-{device}-{scheme}.png"
    page.screenshot(path=str(shot), animations="disabled", caret="hide")
    assert shot.stat().st_size > 10_000
    page.context.close()
