"""A long conversation in Chromium (issue 20): it opens at its newest messages, earlier pages load as the user
scrolls up (no button to press), and "Go to the first message" loads the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

MESSAGES = 260  # over five pages of 50


def linear_chatgpt_export(lengths: dict[str, int], text: str = "words") -> bytes:
    """A ChatGPT conversations.json with one linear conversation of each length (title -> messages); message n
    of conversation T reads "T n: <text>"."""
    conversations = []
    for title, length in lengths.items():
        mapping: dict[str, Any] = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        parent = "root"
        for n in range(length):
            node_id = f"{title}-{n}"
            mapping[parent]["children"].append(node_id)
            mapping[node_id] = {
                "id": node_id,
                "parent": parent,
                "children": [],
                "message": {
                    "id": node_id,
                    "author": {"role": ("user", "assistant")[n % 2]},
                    "create_time": 1_700_000_000 + n,
                    "content": {"content_type": "text", "parts": [f"{title} {n}: {text}"]},
                    "metadata": {},
                    "recipient": "all",
                },
            }
            parent = node_id
        conversations.append({"title": title, "create_time": 1_700_000_000, "mapping": mapping, "current_node": parent})
    return json.dumps(conversations).encode()


def messages_shown(page) -> int:  # type: ignore[no-untyped-def]
    return page.locator("[data-testid=message]").count()


def test_scrolling_up_loads_earlier_pages_and_go_to_first_loads_the_rest(page) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files(
        "#import-upload input[type=file]",
        [
            {
                "name": "conversations.json",
                "mimeType": "application/json",
                "buffer": linear_chatgpt_export({"Long": MESSAGES}),
            }
        ],
    )
    page.locator("[data-testid=conversation-item]", has_text="Long").click()
    page.get_by_text(f"Long {MESSAGES - 1}: words").wait_for()
    assert messages_shown(page) == 50

    # Scrolling up, near the top: the next page comes without a click.
    page.locator("#message-scroller").evaluate("el => el.scrollTo(0, 0)")
    page.wait_for_function("n => document.querySelectorAll('[data-testid=message]').length >= n", arg=100)
    page.get_by_text(f"Long {MESSAGES - 100}: words").wait_for(state="attached")

    page.click("#first-message-button")
    page.get_by_text("Long 0: words").wait_for()  # loaded, and scrolled into view
    assert messages_shown(page) == MESSAGES
    assert page.locator("#first-message-button").count() == 0  # nothing earlier is left
    texts = [text.split("\n")[0] for text in page.locator("[data-testid=message]").all_inner_texts()]
    assert texts == [f"Long {n}: words" for n in range(MESSAGES)]  # in order, each once
