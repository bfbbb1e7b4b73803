"""A reply's Markdown as the words to speak, cut into pieces a speech model reads in turn.

Markdown is parsed by markdown-it-py (the CommonMark parser, with tables and strikethrough) and read
as prose: the marks go, a link reads as its text, each heading, list item and table row ends as a
sentence, and a code block is named ("A code block in Python.") rather than spelled out.

The prose is then cut at sentence ends into pieces of at most `max_chars`, the first kept short:
the sound can start as soon as the first piece is synthesized, while the next ones are made.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

#: The first piece is at most this long: about a sentence, a second or so to synthesize.
FIRST_PIECE_CHARS = 100
#: Markdown parsed per character that may be read: room for the marks, links and code blocks that are not
#: read. Small on purpose: markdown-it is pure Python, and a crafted text costs it about 20 µs a character.
MARKDOWN_PER_SPOKEN_CHAR = 2
#: What a sentence may end with; anything else gets a full stop, so the voice pauses there.
_SENTENCE_END = re.compile(r"[.!?…:;]$")
#: Where prose divides into sentences: after their end and a space, and between blocks (lines).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")
#: Where an over-long sentence may be cut, best first: after a clause mark, then between words.
_CLAUSE_BREAK = re.compile(r"[,;:\u2014\u2013)]\s")  # also after em and en dashes
#: Marks markdown-it leaves in text (an unmatched `*`, a `#` that starts no heading) that a voice would name.
_STRAY_MARKS = re.compile(r"[*`~]+|(?<!\w)#+")
#: "2 * 3" is read "2 times 3" (before the stray asterisks go).
_TIMES = re.compile(r"(?<=\d)\s*[*\u00d7]\s*(?=\d)")  # "*" or the multiplication sign
_SPACES = re.compile(r"[ \t\r\f\v]+")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def spoken_text(markdown: str) -> str:
    """The words a reader would say for `markdown`: one line per block, each ending as a sentence."""
    lines: list[str] = []
    row: list[str] | None = None  # the cells of the table row being read
    for token in _parser().parse(markdown):
        match token.type:
            case "tr_open":
                row = []
            case "tr_close":
                lines.append(", ".join(cell for cell in row or () if cell))
                row = None
            case "inline" if row is not None:
                row.append(_as_words(_inline_text(token.children or [])))
            case "inline":
                lines.append(_inline_text(token.children or []))
            case "fence":
                lines.append(code_block_name(token.info))
            case "code_block":
                lines.append(code_block_name(""))
    return "\n".join(sentence for line in lines if (sentence := _as_sentence(line)))


def code_block_name(info: str) -> str:
    """How a fenced code block is read: "A code block in Python." (its language's name), or "A code block."."""
    language = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    if not language:
        return "A code block."
    try:
        name = get_lexer_by_name(language.lower()).name
    except ClassNotFound:
        name = language
    return f"A code block in {name}."


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    autolink = False
    for child in children:
        match child.type:
            case "text" | "code_inline":
                parts.append("a link" if autolink else child.content)
            case "image":
                parts.append(child.content)  # its alt text
            case "softbreak" | "hardbreak":
                parts.append(" ")
            case "link_open":
                autolink = child.markup in ("autolink", "linkify")
            case "link_close":
                autolink = False
    return "".join(parts)


def _as_words(text: str) -> str:
    text = _STRAY_MARKS.sub("", _TIMES.sub(" times ", text))
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def _as_sentence(text: str) -> str:
    text = _as_words(text)
    if not any(character.isalnum() for character in text):
        return ""
    return text if _SENTENCE_END.search(text) else f"{text}."


def sentences(prose: str) -> list[str]:
    """The sentences of `prose` (as `spoken_text` gives it), in order."""
    return [s.strip() for s in _SENTENCE_BREAK.split(prose) if s.strip()]


def _cut(sentence: str, limit: int) -> list[str]:
    """A sentence in parts of at most `limit` characters: cut after a clause mark, else between words."""
    parts: list[str] = []
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        clause = [m.end() for m in _CLAUSE_BREAK.finditer(window) if m.end() > limit // 3]
        space = window.rfind(" ")
        cut = clause[-1] if clause else (space if space > limit // 3 else limit)
        parts.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    return [*parts, sentence] if sentence else parts


def speech_pieces(prose: str, max_chars: int, first_chars: int = FIRST_PIECE_CHARS) -> list[str]:
    """`prose` in pieces of whole sentences of at most `max_chars` (a longer sentence is cut), in order.

    The first piece is at most `first_chars`: the sound starts once it is synthesized.
    """
    pieces: list[str] = []
    current = ""
    for sentence in sentences(prose):
        for part in _cut(sentence, max_chars):
            if current and len(current) + 1 + len(part) > (max_chars if pieces else first_chars):
                pieces.append(current)
                current = ""
            if not pieces and len(part) > first_chars:  # the first piece: the start of this part
                head = _cut(part, first_chars)[0]
                pieces.append(head)
                part = part[len(head) :].strip()
            current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def within(pieces: Sequence[str], max_chars: int) -> list[str]:
    """The leading pieces whose text adds up to at most `max_chars` (at least a cut first piece)."""
    kept: list[str] = []
    total = 0
    for piece in pieces:
        if total + len(piece) > max_chars:
            if not kept:
                kept.append(_cut(piece, max_chars)[0])
            break
        kept.append(piece)
        total += len(piece)
    return kept


def pieces_to_read(markdown: str, max_chars: int, piece_chars: int) -> list[str]:
    """What Read aloud speaks of a reply, piece by piece: at most `max_chars` characters in all.

    Only the reply's start is parsed (MARKDOWN_PER_SPOKEN_CHAR times what is read), so the work is bounded
    whatever the reply's length.
    """
    prose = spoken_text(markdown[: max_chars * MARKDOWN_PER_SPOKEN_CHAR])
    return within(speech_pieces(prose, piece_chars, min(FIRST_PIECE_CHARS, piece_chars)), max_chars)
