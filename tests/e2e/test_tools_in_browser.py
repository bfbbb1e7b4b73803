"""Tools in the browser (issue 21): calls shown live and after a reload, approved from another tab or denied,
stopped mid-call, a server that is down, web sources, and search in a PDF that was cut to fit.

The fake Groq server asks for a call when a message says "call <tool> <json>"; the tools are the real
MCP server's (tests/fakes/mcp_server.py) and the app's own search_files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import app_of_its_own, start_page
from tests.e2e.live_app import LiveApp
from tests.fakes.fake_llm_server import COMPOUND_MODELS, FAKE_SEARCH_RESULTS, FakeLLMServer
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.sample_files import make_pdf

pytestmark = pytest.mark.e2e

CALL = '[data-testid="tool-call"]'
FILE_INPUT = "#composer input[type=file]"


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer, mcp_server: FakeMcpServer
) -> Iterator[LiveApp]:
    servers = [{"name": "facts", "url": mcp_server.url, "default_on": True}]
    fake_llm.compound_models = COMPOUND_MODELS  # for a model list fetched as the backend starts
    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "tools_app",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_TOOL_MODELS="fake-large",
        CHATBOT_MCP_SERVERS=json.dumps(servers),
        CHATBOT_MCP_ALLOW_PRIVATE="true",
        CHATBOT_CONTEXT_TOKENS="300",  # a page of PDF text is cut to fit
        CHATBOT_NEW_IDENTITIES_PER_HOUR="100000",
        CHATBOT_ADDRESS_RATE_LIMIT_PER_MINUTE="100000",
    ) as running:
        yield running


@pytest.fixture
def tools(fake: FakeLLMServer, mcp_fake: FakeMcpServer) -> FakeMcpServer:
    """Each test: the fake LLM (compound models on) and the MCP server, both fresh."""
    fake.compound_models = COMPOUND_MODELS
    return mcp_fake


@pytest.fixture
def page(browser, app: LiveApp, tools: FakeMcpServer):  # type: ignore[no-untyped-def]
    """conftest's page, opened once the compound models are served: the app lists (and keeps) them then."""
    with start_page(browser, app) as page:
        yield page


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", text)
    page.keyboard.press("Enter")


def call_with_status(page, name: str, status: str):  # type: ignore[no-untyped-def]
    return page.wait_for_selector(f'{CALL}[data-name="{name}"][data-status="{status}"]')


def wait_for_replies(page, count: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= {count}"
    )


def test_a_call_is_shown_with_its_arguments_and_result_then_after_a_reload(page, tools: FakeMcpServer) -> None:  # type: ignore[no-untyped-def]
    send(page, 'call facts__lookup {"key": "capital-of-france"}')
    wait_for_replies(page, 1)
    call = call_with_status(page, "facts__lookup", "done")
    assert not call.evaluate("e => e.querySelector('details').open")  # collapsed by default
    call.click()  # the summary opens it
    details = call.inner_text()
    assert "capital-of-france" in details and "Paris" in details

    page.reload()
    call = call_with_status(page, "facts__lookup", "done")
    call.click()
    assert "Paris" in call.inner_text()


def test_a_call_waiting_for_approval_survives_a_reload_and_is_approved_from_a_second_tab(  # type: ignore[no-untyped-def]
    page, tools: FakeMcpServer
) -> None:
    send(page, 'call facts__write_note {"text": "buy milk"}')
    call_with_status(page, "facts__write_note", "awaiting-approval")
    page.wait_for_url("**/c/*")
    page.reload()  # the reply (and its call) belongs to the server: it is still waiting
    call_with_status(page, "facts__write_note", "awaiting-approval")
    assert tools.notes == []

    second = page.context.new_page()
    second.goto(page.url)
    second.click(f'{CALL}[data-name="facts__write_note"] [data-testid="tool-approve"]')

    call_with_status(page, "facts__write_note", "done")
    wait_for_replies(page, 1)
    assert tools.notes == ["buy milk"]
    assert page.query_selector('[data-testid="tool-approve"]') is None
    second.close()


def test_deny_keeps_the_tool_from_running_and_the_reply_goes_on(page, tools: FakeMcpServer) -> None:  # type: ignore[no-untyped-def]
    send(page, 'call facts__write_note {"text": "sell the car"}')
    call_with_status(page, "facts__write_note", "awaiting-approval")
    page.click('[data-testid="tool-deny"]')
    call_with_status(page, "facts__write_note", "denied")
    wait_for_replies(page, 1)
    assert tools.notes == []
    assert "denied" in page.inner_text("[data-role=assistant]")  # the fake quotes what the model was told


def test_stop_during_a_slow_tool_stops_the_call_and_the_reply(page, tools: FakeMcpServer) -> None:  # type: ignore[no-untyped-def]
    send(page, 'call facts__slow {"seconds": 60}')
    call_with_status(page, "facts__slow", "running")
    page.click("#stop-button")
    call_with_status(page, "facts__slow", "error")
    page.wait_for_selector("[data-role=assistant][data-status=stopped]")
    page.locator(CALL).click()
    assert "Stopped by the user." in page.inner_text(CALL)


def test_a_server_that_is_down_shows_the_error_on_its_call_and_the_reply_completes(  # type: ignore[no-untyped-def]
    page, tools: FakeMcpServer
) -> None:
    send(page, 'call facts__lookup {"key": "boiling-point-of-water"}')  # its tools are listed (and kept)
    wait_for_replies(page, 1)
    tools.stop()
    send(page, 'call facts__lookup {"key": "capital-of-france"}')
    wait_for_replies(page, 2)
    failed = page.locator(f'{CALL}[data-status="error"]')
    failed.click()
    assert "facts" in failed.inner_text()


def test_web_search_sources_are_numbered_links_that_open_in_a_new_tab(page, tools: FakeMcpServer) -> None:  # type: ignore[no-untyped-def]
    page.select_option("#model-select", "groq:groq/compound")
    page.wait_for_function("document.querySelector('#model-select').value === 'groq:groq/compound'")
    page.click('#web-search-toggle[data-state="unchecked"]')  # off, a compound system leaves the web alone
    page.wait_for_selector('#web-search-toggle[data-state="checked"]')
    send(page, "What happened today?")
    wait_for_replies(page, 1)
    links = page.locator('a[data-testid="source"]')
    urls = [url for _, url in FAKE_SEARCH_RESULTS]
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == urls
    assert links.first.get_attribute("target") == "_blank"
    assert "noopener" in (links.first.get_attribute("rel") or "")
    assert page.locator(CALL).first.get_attribute("data-status") == "done"


def test_search_files_finds_text_from_a_pdf_that_was_cut_to_fit(
    page, tools: FakeMcpServer, fake: FakeLLMServer
) -> None:  # type: ignore[no-untyped-def]
    lines = [f"Line {n} of the annual report says nothing of note at all." for n in range(40)]
    pdf = make_pdf(*lines, "The secret budget figure is 4217 dollars.")
    page.set_input_files(FILE_INPUT, [{"name": "report.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    page.wait_for_selector("text=report.pdf")
    send(page, "Read this")
    wait_for_replies(page, 1)
    sent = fake.streamed_requests()[-1].body["messages"][-1]["content"]
    assert "The file was cut here" in sent and "4217" not in sent  # cut to fit the context

    send(page, 'call search_files {"query": "secret budget figure"}')
    wait_for_replies(page, 2)
    call = call_with_status(page, "search_files", "done")
    call.click()
    assert "4217" in call.inner_text() and "report.pdf" in call.inner_text()


def test_a_model_without_tools_shows_the_switches_off_and_says_why(page, tools: FakeMcpServer) -> None:  # type: ignore[no-untyped-def]
    page.select_option("#model-select", "groq:fake-small")
    page.wait_for_selector("#tools-unavailable")
    assert "fake-small does not call tools" in page.inner_text("#tools-unavailable")
    assert page.is_disabled("#web-search-toggle")
    page.click("#settings-button")
    toggle = page.wait_for_selector('[data-testid="mcp-toggle"][data-server="facts"]')
    assert toggle.is_disabled()


def test_turning_a_server_off_for_a_conversation_takes_its_tools_away(  # type: ignore[no-untyped-def]
    page, tools: FakeMcpServer, fake: FakeLLMServer
) -> None:
    toggle = '[data-testid="mcp-toggle"][data-server="facts"]'
    page.click("#settings-button")
    page.wait_for_selector(f'{toggle}[data-state="checked"]')  # on by default (default_on)
    page.click(toggle)
    page.wait_for_selector(f'{toggle}[data-state="unchecked"]')
    page.keyboard.press("Escape")
    send(page, "Hello")
    wait_for_replies(page, 1)

    [reply] = fake.streamed_requests()  # (the title is asked for apart, without tools)
    names = {tool["function"]["name"] for tool in reply.body["tools"] if "function" in tool}
    assert "search_files" in names and not any(name.startswith("facts__") for name in names)
    page.reload()  # kept on the conversation
    page.click("#settings-button")
    page.wait_for_selector(f'{toggle}[data-state="unchecked"]')
