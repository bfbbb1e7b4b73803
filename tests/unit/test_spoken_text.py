"""Read aloud's text: Markdown read as prose, and cut into pieces of whole sentences, the first one short."""

from __future__ import annotations

import pytest

from chatbot_app.services.spoken_text import (
    FIRST_PIECE_CHARS,
    code_block_name,
    pieces_to_read,
    sentences,
    speech_pieces,
    spoken_text,
    within,
)


def test_marks_go_and_links_read_as_their_text() -> None:
    prose = spoken_text("## *Getting* started\n\nInstall it with **pip**, then read [the guide](https://x.test/g).")

    assert prose == "Getting started.\nInstall it with pip, then read the guide."
    assert not set("*#[]()") & set(prose)


def test_code_blocks_are_named_not_spelled_out() -> None:
    prose = spoken_text(
        "Run this:\n\n```python\nimport os\nprint(os.getcwd())\n```\n\n"
        "```js\nconsole.log(1)\n```\n\n```\nplain\n```\n\n    indented()\n"
    )

    assert prose.splitlines() == [
        "Run this:",
        "A code block in Python.",
        "A code block in JavaScript.",
        "A code block.",
        "A code block.",
    ]
    assert "import" not in prose and "console" not in prose


@pytest.mark.parametrize(
    ("info", "said"),
    [
        ("py", "A code block in Python."),
        ("ts {linenos}", "A code block in TypeScript."),
        ("yml", "A code block in YAML."),
        ("cpp", "A code block in C++."),
        ("no-such-language", "A code block in no-such-language."),
        ("", "A code block."),
    ],
)
def test_a_code_block_is_named_by_its_language(info: str, said: str) -> None:
    assert code_block_name(info) == said


def test_lists_headings_and_table_rows_each_end_as_a_sentence() -> None:
    prose = spoken_text(
        "# Plan\n\n- Buy milk\n- Call Ann!\n\n1. First\n2. Second\n\n| Name | Age |\n|---|---|\n| Ann | 31 |\n"
    )

    assert prose.splitlines() == ["Plan.", "Buy milk.", "Call Ann!", "First.", "Second.", "Name, Age.", "Ann, 31."]


def test_inline_code_html_autolinks_and_stray_marks() -> None:
    prose = spoken_text("Use `ls -l` <b>now</b>: see <https://x.test/a>. 2 * 3 is 6 and C# is #1 ~~old~~.\n\n---\n")

    assert prose == "Use ls -l now: see a link. 2 times 3 is 6 and C# is 1 old."


def test_text_without_words_reads_as_nothing() -> None:
    assert spoken_text("---\n\n***\n\n```\n") == "A code block."
    assert spoken_text("") == ""
    assert spoken_text("**  **\n\n> \n") == ""


def test_sentences_divide_at_their_ends_and_between_lines() -> None:
    assert sentences("One. Two? Three!\nFour: five\n\nSix… seven 3.14 eight.") == [
        "One.",
        "Two?",
        "Three!",
        "Four: five",
        "Six…",
        "seven 3.14 eight.",
    ]


def test_pieces_are_whole_sentences_within_the_limit_and_the_first_is_short() -> None:
    prose = " ".join(f"Sentence number {i} is here and it says a few words." for i in range(40))

    pieces = speech_pieces(prose, max_chars=200)

    assert " ".join(pieces) == prose  # nothing lost, nothing repeated, in order
    assert len(pieces[0]) <= FIRST_PIECE_CHARS
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.endswith(".") for p in pieces)  # cut at sentence ends only
    assert len(pieces[1]) > 150  # later pieces are filled


def test_a_long_sentence_is_cut_after_a_clause_then_between_words() -> None:
    sentence = "This sentence goes on, " * 20 + "and then it ends."

    pieces = speech_pieces(sentence, max_chars=120, first_chars=60)

    assert " ".join(pieces) == sentence
    assert len(pieces[0]) <= 60 and all(len(p) <= 120 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    unbroken = "word " * 100
    assert all(len(p) <= 50 for p in speech_pieces(unbroken, 50, 20))
    assert speech_pieces("x" * 130, 50, 20) == ["x" * 20, "x" * 30, "x" * 50, "x" * 30]


def test_only_the_start_of_a_long_reply_is_read() -> None:
    assert within(["a" * 10, "b" * 10, "c" * 10], 25) == ["a" * 10, "b" * 10]
    assert within(["word " * 10], 12) == ["word word"]

    pieces = pieces_to_read("Hello there. " * 500, max_chars=300, piece_chars=200)

    assert sum(len(p) for p in pieces) <= 300
    assert pieces[0] == "Hello there. " * 6 + "Hello there."  # the first piece: at most 100 characters


def test_nothing_to_read_gives_no_pieces() -> None:
    assert pieces_to_read("```python\n```", 1000, 200) == ["A code block in Python."]
    assert pieces_to_read("---", 1000, 200) == []


def test_only_the_start_of_a_huge_reply_is_parsed() -> None:
    code = "```\n" + "x = 1\n" * 100_000 + "```\n\nAfter the code."  # the code block alone is 600,000 characters

    assert pieces_to_read(code, max_chars=1000, piece_chars=200) == ["A code block."]  # its end is never reached
    assert pieces_to_read("Short.\n\n" + code, 1000, 200) == ["Short. A code block."]
