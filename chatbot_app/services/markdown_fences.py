"""Code fences that models misplace, moved onto lines of their own before the reply is rendered.

Models now and then open a fence at the end of a sentence ("Here: ```js") or write text after the
closing one ("``` and the end."). CommonMark reads the first as literal backticks and the second as
the opening of a new block whose "language" is the rest of the line, so the words after it vanish
into the block's info string. Here both are split so that the fence starts its own line; nothing
else changes, and no character of the text is dropped.

A fence opened mid-line is moved only when the next fence of its kind closes it (or there is none,
as while a reply is still arriving): "wrap it in ```" followed later by "```python" stays as it is.
"""

from __future__ import annotations

import re

#: A fence line as CommonMark reads it: up to three spaces, three or more backticks or tildes, the rest.
_FENCE_LINE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
#: A backtick fence at the end of a line of prose: "Here: ```js" (the language word, if any, ends the line).
_TRAILING_OPENER = re.compile(r"^(?P<before>.*?\S)[ \t]*(?P<fence>`{3,})(?P<info>[^\s`]*)[ \t]*$")


def _closes(line: str, char: str, length: int) -> bool:
    """Whether `line` can end a block opened by `length` times `char` (text after it allowed, split later)."""
    match = _FENCE_LINE.match(line)
    if match is None or match.group(2)[0] != char or len(match.group(2)) < length:
        return False
    rest = match.group(3)
    return not rest.strip() or rest[0] in " \t"


def _next_fence_closes(lines: list[str], start: int, char: str, length: int, named: bool) -> bool:
    """Whether the first fence line of `char` after `start` would close a block; with none, whether the
    opener names a language (a bare "```" at the end of a sentence is more likely prose about fences)."""
    for line in lines[start:]:
        match = _FENCE_LINE.match(line)
        if match is not None and match.group(2)[0] == char:
            return _closes(line, char, length)
    return named


def tidy_fences(text: str) -> str:
    """`text` with misplaced code fences moved onto their own lines (see the module's docstring)."""
    if "```" not in text and "~~~" not in text:
        return text
    lines = text.split("\n")
    out: list[str] = []
    open_fence: tuple[str, int] | None = None  # (char, length) of the block we are in
    for number, line in enumerate(lines):
        if open_fence is not None:
            char, length = open_fence
            if _closes(line, char, length):
                match = _FENCE_LINE.match(line)
                assert match is not None
                indent, fence, rest = match.groups()
                out.append(indent + fence)
                if rest.strip():  # "``` and the end.": the words after the fence are prose again
                    out.append(rest.strip())
                open_fence = None
            else:
                out.append(line)
            continue
        match = _FENCE_LINE.match(line)
        if match is not None and not (match.group(2)[0] == "`" and "`" in match.group(3)):
            open_fence = (match.group(2)[0], len(match.group(2)))
            out.append(line)
            continue
        trailing = _TRAILING_OPENER.match(line)
        # Not after a backslash (an escaped backtick), nor closing an inline span of the same fence ("```ls```").
        before = trailing.group("before") if trailing is not None else ""
        if trailing is not None and not before.endswith("\\") and trailing.group("fence") not in before:
            fence = trailing.group("fence")
            if _next_fence_closes(lines, number + 1, fence[0], len(fence), bool(trailing.group("info"))):
                indent = line[: len(line) - len(line.lstrip())]
                out.extend((before, indent + fence + trailing.group("info")))
                open_fence = (fence[0], len(fence))
                continue
        out.append(line)
    return "\n".join(out)
