"""Versions of a message in Chromium (issue 20): an edit and Regenerate keep the old version, "< 2/2 >" switches
between them with the newest path below each, and the choice survives a reload."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_chat_in_browser import send, wait_for_conversation_url, wait_for_replies
from tests.fakes.fake_llm_server import Behaviour, FakeLLMServer, Hold
from tests.integration.test_transfer import chatgpt_export

pytestmark = pytest.mark.e2e


def shown(page) -> list[str]:  # type: ignore[no-untyped-def]
    """The first line of each message on the page."""
    return [el.inner_text().split("\n")[0] for el in page.query_selector_all("[data-testid=message]")]


def wait_for_shown(page, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "want => JSON.stringify([...document.querySelectorAll('[data-testid=message]')]"
        ".map(e => e.innerText.split('\\n')[0])) === JSON.stringify(want)",
        arg=texts,
    )


def test_an_edit_keeps_the_old_branch_one_click_away_and_a_reload_keeps_the_choice(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    fake.enqueue_stream(*(Behaviour(text=f"Answer {n}.") for n in range(1, 4)))
    send(page, "Plan a trip to Oslo")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    send(page, "In winter")
    wait_for_replies(page, 2)
    assert page.query_selector("[data-testid=branch-position]") is None  # one version of everything

    page.locator(".edit-button").first.click()
    page.fill("#edit-input", "Plan a trip to Bergen")
    page.click("#edit-save")
    wait_for_shown(page, ["Plan a trip to Bergen", "Answer 3."])
    position = page.locator("[data-testid=branch-position]")
    position.filter(has_text="2/2").wait_for()
    assert position.count() == 1
    assert page.locator("[data-testid=branch-next]").is_disabled()

    page.click("[data-testid=branch-prev]")
    wait_for_shown(page, ["Plan a trip to Oslo", "Answer 1.", "In winter", "Answer 2."])
    position.filter(has_text="1/2").wait_for()
    assert page.locator("[data-testid=branch-prev]").is_disabled()

    page.reload()
    wait_for_shown(page, ["Plan a trip to Oslo", "Answer 1.", "In winter", "Answer 2."])
    position.filter(has_text="1/2").wait_for()


def test_regenerating_twice_keeps_three_versions_and_the_arrows_go_through_them(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    answers = ["A dull answer.", "A better answer.", "The best answer."]
    fake.enqueue_stream(*(Behaviour(text=answer) for answer in answers))
    send(page, "Tell me something")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    position = page.locator("[data-testid=branch-position]")

    page.locator(".regenerate-button").click()
    wait_for_shown(page, ["Tell me something", "A better answer."])
    position.filter(has_text="2/2").wait_for()
    page.locator(".regenerate-button").click()
    wait_for_shown(page, ["Tell me something", "The best answer."])
    position.filter(has_text="3/3").wait_for()

    for place in (2, 1):
        page.click("[data-testid=branch-prev]")
        wait_for_shown(page, ["Tell me something", answers[place - 1]])
        position.filter(has_text=f"{place}/3").wait_for()
    assert page.locator("[data-testid=branch-prev]").is_disabled()
    page.click("[data-testid=branch-next]")
    wait_for_shown(page, ["Tell me something", "A better answer."])
    position.filter(has_text="2/3").wait_for()


def test_a_second_tab_on_the_conversation_follows_a_switch_made_in_the_first(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="A dull answer."), Behaviour(text="A better answer."))
    send(page, "Tell me something")
    wait_for_replies(page, 1)
    url = wait_for_conversation_url(page)
    page.locator(".regenerate-button").click()
    page.locator("[data-testid=branch-position]").filter(has_text="2/2").wait_for()
    other = page.context.new_page()  # the same browser: the same identity
    other.goto(url)
    wait_for_shown(other, ["Tell me something", "A better answer."])

    page.click("[data-testid=branch-prev]")
    wait_for_shown(other, ["Tell me something", "A dull answer."])  # no reload, no click in this tab
    other.locator("[data-testid=branch-position]").filter(has_text="1/2").wait_for()
    other.close()


def test_a_chatgpt_export_with_an_edited_question_imports_both_branches_to_switch_between(page) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files(
        "#import-upload input[type=file]",
        [
            {
                "name": "conversations.json",
                "mimeType": "application/json",
                "buffer": json.dumps(chatgpt_export()).encode(),
            }
        ],
    )
    page.locator("[data-testid=conversation-item]", has_text="Rain haiku").click()
    current = [
        "Give me a haiku about rain",
        "Soft rain on the roof ...",
        "Now one about snow",
        "White hush on the pines",
    ]
    wait_for_shown(page, current)  # the branch ChatGPT showed last (current_node)
    position = page.locator("[data-testid=branch-position]")
    position.filter(has_text="2/2").wait_for()

    page.click("[data-testid=branch-prev]")
    wait_for_shown(
        page, ["Give me a haiku about rain", "Soft rain on the roof ...", "Now one about snwo", "(abandoned branch)"]
    )
    position.filter(has_text="1/2").wait_for()


def test_a_reply_streaming_on_the_branch_left_is_shown_whole_on_returning(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    hold = Hold(after_tokens=3)
    fake.enqueue_stream(
        Behaviour(text="A dull answer."),
        Behaviour(text="A better answer."),
        Behaviour(text="Otters hold hands while they sleep so they do not drift apart.", hold=hold),
    )
    send(page, "Tell me something")
    wait_for_replies(page, 1)
    wait_for_conversation_url(page)
    page.locator(".regenerate-button").click()
    page.locator("[data-testid=branch-position]").filter(has_text="2/2").wait_for()
    send(page, "Tell me more")
    assert hold.reached.wait(20)

    page.click("[data-testid=branch-prev]")  # away, while the reply is written on the branch left
    wait_for_shown(page, ["Tell me something", "A dull answer."])
    hold.release()
    page.click("[data-testid=branch-next]")

    wait_for_shown(
        page,
        [
            "Tell me something",
            "A better answer.",
            "Tell me more",
            "Otters hold hands while they sleep so they do not drift apart.",
        ],
    )
    wait_for_replies(page, 2)


def test_branch_in_new_chat_opens_a_copy_of_the_path_up_to_the_reply(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    fake.enqueue_stream(Behaviour(text="Answer one."), Behaviour(text="Answer two."))
    send(page, "First question")
    wait_for_replies(page, 1)
    first_url = wait_for_conversation_url(page)
    send(page, "Second question")
    wait_for_replies(page, 2)

    page.locator("[data-role=assistant] [data-testid=fork-button]").first.click()
    page.wait_for_url(lambda url: url != first_url and "/c/" in url, wait_until="commit")
    wait_for_shown(page, ["First question", "Answer one."])
    page.locator("[data-testid=conversation-item]").filter(has_text="(branch)").wait_for()
    page.goto(first_url)
    wait_for_shown(page, ["First question", "Answer one.", "Second question", "Answer two."])
