"""The red "Revoke" of a personal API key or a share link, named for what it revokes."""

from __future__ import annotations

from typing import Any

import reflex as rx


def revoke_button(on_click: Any, aria_label: Any, class_name: str) -> rx.Component:
    return rx.button(
        "Revoke",
        size="2",
        color_scheme="red",
        variant="soft",
        on_click=on_click,
        aria_label=aria_label,
        class_name=class_name,
    )
