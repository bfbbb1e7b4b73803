"""tidy_fences: misplaced code fences move onto their own lines; nothing else changes, no character is lost."""

from __future__ import annotations

import re

import pytest

from chatbot_app.services.markdown_fences import tidy_fences


def visible(text: str) -> str:
    return re.sub(r"\s", "", text)


def test_a_fence_opened_mid_line_and_text_after_the_closing_one_are_split() -> None:
    text = "Here: ```js\nconst x = 1;\nconsole.log(x)\n``` and the end."
    assert tidy_fences(text) == "Here:\n```js\nconst x = 1;\nconsole.log(x)\n```\nand the end."


def test_text_after_a_closing_fence_of_a_well_opened_block_becomes_prose() -> None:
    assert tidy_fences("```py\nprint(1)\n```   Done.") == "```py\nprint(1)\n```\nDone."


@pytest.mark.parametrize(
    "text",
    [
        "Plain prose, no fences at all.",
        "```python\nprint('hi')\n```\nAfter.",
        "Inline ```ls -l``` stays a code span.",
        "Use ``code with ` inside`` here.",
        "````md\n```js\nx\n```\n````",  # a fence shown inside a longer one
        "~~~\ncode\n~~~",
        "Thanks~~~\nSee you",  # tildes as decoration are never a fence mid-line
        "Escaped \\```js\nnot code",
        "In Markdown you wrap code in ```\nand that is all.",  # a bare mention, nothing closes it
        "```python\nprint(1)",  # unclosed: CommonMark already shows it as code to the end
    ],
)
def test_well_formed_or_ambiguous_text_is_left_alone(text: str) -> None:
    assert tidy_fences(text) == text


def test_a_mid_line_fence_whose_next_fence_opens_a_block_of_its_own_stays() -> None:
    text = "Wrap it in ```\nlike this:\n```python\nprint(1)\n```"
    assert tidy_fences(text) == text


def test_an_unclosed_fence_opened_mid_line_with_a_language_is_moved() -> None:
    assert tidy_fences("Run this: ```bash\nls -l") == "Run this:\n```bash\nls -l"


def test_lines_inside_a_block_are_never_touched() -> None:
    text = "```md\nHere: ```js\n```"
    assert tidy_fences(text) == text


def test_it_is_idempotent_and_keeps_every_visible_character() -> None:
    samples = [
        "Here: ```js\nconst x = 1;\n``` and the end.",
        "1. Install: ```bash\n   pip install x\n   ``` then run it\n2. Done",
        "a ```py\nb\n``` c\nd ```sh\ne\n``` f",
    ]
    for text in samples:
        once = tidy_fences(text)
        assert tidy_fences(once) == once
        assert visible(once) == visible(text)
