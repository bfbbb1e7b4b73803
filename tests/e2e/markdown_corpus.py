"""Awkward model outputs, and what "the same text less the Markdown syntax" means for comparing them.

Each item is what a model might stream: its `chunks` are sent one per token, so a fence can be cut in
the middle and land in two of the parts a streamed reply is spread over (state/stream_parts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    name: str
    chunks: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def _words(text: str) -> tuple[str, ...]:
    """Word tokens that keep their leading white space, as the fake server streams a text."""
    return tuple(re.findall(r"\s*\S+", text))


CORPUS = (
    Sample(
        "a fence opened mid-line, text after the closing one",
        _words("Here: ```js\nconst x = 1;\nconsole.log(x)\n``` and the end."),
    ),
    Sample("an unclosed fence", _words("Start:\n```python\nprint('never closed')\nx = 2")),
    Sample("an empty fence", ("Before.\n", "```\n", "```\n", "After.")),
    Sample(
        "fences inside a list",
        _words(
            "1. Install it:\n   ```bash\n   pip install chatbot\n   ```\n"
            "2. Run it:\n   ```\n   chatbot --help\n   ```\n3. Done."
        ),
    ),
    Sample("a fence opened mid-line in a list item", _words("- Step one: ```sh\nls -la\n```\n- Step two")),
    Sample(
        "nested backticks",
        _words(
            "Use ``a ` tick`` inline, and:\n````markdown\n```js\nlet y = 2;\n```\n````\nThen ```not a fence``` inline."
        ),
    ),
    # The fence's backticks, its language and its closing are each cut across separate stream parts.
    Sample(
        "a fence split across stream parts",
        ("Code:\n`", "`", "`py", "th", "on\n", "print(", "'split')", "\n`", "``", "\nDone."),
    ),
    Sample(
        "text that looks like HTML",
        _words(
            "<div>Not a div</div> <script>alert('x')</script> <b>bold?</b> and a < b > c & d. <img src=x onerror=y>"
        ),
    ),
    Sample("a very long line", ("Long: " + "x" * 2500, " and a link https://example.com/" + "a" * 400, " end.")),
    Sample(
        "tables, well formed and not",
        _words("| Name | Qty |\n|:-----|----:|\n| apple | 3 |\n| pear | 10 |\n\nAfter the table.\n\n| a | b |\n| 1 |"),
    ),
    Sample(
        "emphasis, escapes and stray stars",
        _words("**bold** _it_ ~~strike~~ \\*not bold\\* 2 * 3 = 6, and a # that is no heading."),
    ),
    Sample("money, not math", _words("It costs $5 and $10, or $15 in all.")),
    Sample("headings, quotes and rules", _words("# Title\n> quoted\n> more\n\n---\n\n## Sub\ntext")),
    Sample(
        "links and an image from the model",
        _words("See [the docs](https://example.com/docs) and ![a chart](https://example.com/chart.png)."),
    ),
    Sample("unicode", _words("Ünïcödé 😀 — “quotes” and 日本語.")),
)


def _compact(text: str) -> str:
    """Text without Markdown's syntax characters and white space, for comparing what reads the same."""
    return re.sub(r"[\s`*_~#|\\:-]", "", text)


def without_markdown(stored: str) -> str:
    """The stored text less its Markdown syntax, compacted: what the page must show, character for character.

    Links show their text; an image from the model shows as a link "Image: <alt>" (it is never loaded);
    list markers and quote marks are not text.
    """
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"Image: \1", stored)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^[ \t]*(?:[-+*]|\d+[.)])[ \t]+", "", text, flags=re.MULTILINE)
    text = re.sub(r"^[ \t]*>[ \t]?", "", text, flags=re.MULTILINE)
    return _compact(text)


def page_text(shown: str) -> str:
    """What the page shows (an element's innerText), compacted the same way."""
    return _compact(shown)
