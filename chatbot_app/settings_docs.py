"""docs/configuration.md, generated from the settings classes, so the docs and the code cannot drift.

    python -m chatbot_app.settings_docs           # write docs/configuration.md
    python -m chatbot_app.settings_docs --check   # fail if it, or .env.example, disagrees with the classes

Each field of `Settings` (and of `ProdSettings`, make prod's own) gives its variable, default and
meaning; a field marked with a `section` starts a new table.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from chatbot_app.config import PROJECT_ROOT, ProdSettings, Settings, is_secret, variable

DOCS_PATH = PROJECT_ROOT / "docs" / "configuration.md"
ENV_EXAMPLE_PATH = PROJECT_ROOT / ".env.example"
#: Variables of Reflex's own that .env.example mentions because they matter here; not ours to document.
REFLEX_VARIABLES = frozenset({"REFLEX_OPLOCK_ENABLED", "GRANIAN_WORKERS"})

HEADER = """\
# Configuration

Every setting is an environment variable, also read from `.env` in the project folder (git-ignored; the
environment wins). [`.env.example`](../.env.example) lists them all. A wrong value stops the start with one
line that names the variable and what it accepts.

This page is generated from the settings classes (`chatbot_app/config.py`) by
`python -m chatbot_app.settings_docs`; a test fails when it, `.env.example` and the classes disagree.
"""


def _default(name: str, info: FieldInfo, cls: type[Settings]) -> str:
    if is_secret(name, cls) or info.default is None or info.default in ((), ""):
        return "(none)"
    value: Any = info.default
    if isinstance(value, tuple):
        value = ",".join(value)
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value).replace(str(PROJECT_ROOT), ".")  # the project folder, wherever it is checked out
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}…`"


def _fields(cls: type[Settings], inherited: bool) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in cls.model_fields.items():
        if inherited or name not in Settings.model_fields:
            yield name, info


def render() -> str:
    """The whole page."""
    lines = [HEADER.rstrip("\n")]
    for cls, inherited in ((Settings, True), (ProdSettings, False)):
        for name, info in _fields(cls, inherited):
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if section := extra.get("section"):
                lines += ["", f"## {section}", "", "| Variable | Default | Meaning |", "|---|---|---|"]
            meaning = (info.description or "").replace("|", "\\|")
            shown = " or ".join(f"`{env}`" for env in _names(name, cls))
            lines.append(f"| {shown} | {_default(name, info, cls)} | {meaning} |")
    return "\n".join(lines) + "\n"


def _names(name: str, cls: type[Settings]) -> list[str]:
    """The variables a field is read from, first the one it is known by."""
    alias = cls.model_fields[name].validation_alias
    return [str(a) for a in getattr(alias, "choices", [])] or [variable(name, cls)]


def documented_variables() -> set[str]:
    """Every variable the classes read."""
    return {env for cls in (Settings, ProdSettings) for name in cls.model_fields for env in _names(name, cls)}


def example_variables(path: Path = ENV_EXAMPLE_PATH) -> set[str]:
    """The variables .env.example sets or shows commented out (`NAME=` or `# NAME=`)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.M)
    return set(pattern.findall(path.read_text(encoding="utf-8")))


def disagreements() -> list[str]:
    """What differs between the classes, docs/configuration.md and .env.example ([] when they agree)."""
    problems = []
    if not DOCS_PATH.exists() or DOCS_PATH.read_text(encoding="utf-8") != render():
        problems.append(f"{DOCS_PATH.relative_to(PROJECT_ROOT)} is not what the classes generate")
    known, shown = documented_variables(), example_variables()
    if missing := sorted(known - shown):
        problems.append(f".env.example lacks {', '.join(missing)}")
    if unknown := sorted(shown - known - REFLEX_VARIABLES):
        problems.append(f".env.example has variables no setting reads: {', '.join(unknown)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if anything disagrees")
    args = parser.parse_args(argv)
    if args.check:
        for problem in (problems := disagreements()):
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    DOCS_PATH.parent.mkdir(exist_ok=True)
    DOCS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCS_PATH.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
