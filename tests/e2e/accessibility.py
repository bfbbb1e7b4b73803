"""axe-core in the browser tests: injected into a page through Playwright, its serious and critical
violations returned in words. The Makefile installs it from npm (tests/e2e/axe/package-lock.json)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.conftest import skip_or_fail

AXE_SCRIPT = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
#: Impacts that fail a test; "minor" and "moderate" ones are reported by axe but left to judgement.
BLOCKING = ("serious", "critical")


@lru_cache(maxsize=1)
def _axe_source() -> str:
    if not AXE_SCRIPT.exists():
        skip_or_fail(f"axe-core is not installed at {AXE_SCRIPT} (make axe)")
    return AXE_SCRIPT.read_text(encoding="utf-8")


def blocking_violations(page: Any) -> list[str]:  # a Playwright page
    """axe's serious and critical violations on the page as it is now, one line per failing element."""
    page.add_script_tag(content=_axe_source())
    violations = page.evaluate(
        """async () => {
          const result = await axe.run(document, {resultTypes: ['violations']});
          return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            targets: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').split('\\n')[1])}));
        }"""
    )
    return [
        f"{v['impact']} {v['id']} ({v['help']}): {target}"
        for v in violations
        if v["impact"] in BLOCKING
        for target in v["targets"]
    ]
