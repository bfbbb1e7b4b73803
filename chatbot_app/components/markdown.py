"""Markdown for model output: no raw HTML, highlighted code blocks with a copy button."""

from __future__ import annotations

from typing import Any

import reflex as rx


def _code_block(code: Any, **props: Any) -> rx.Component:
    return rx.code_block(code, can_copy=True, wrap_long_lines=True, margin_y="0.75em", **props)


def _image_as_link(*children: Any, **props: Any) -> rx.Component:
    # Images in model output are not fetched automatically (tracking pixels, exfiltration); show a link.
    return rx.link(props.get("alt") or "image", href=props.get("src"), is_external=True)


COMPONENT_MAP = {"pre": _code_block, "img": _image_as_link}


def markdown(text: Any) -> rx.Component:
    """Render untrusted Markdown: raw HTML stays text, never markup."""
    return rx.markdown(text, use_raw=False, component_map=COMPONENT_MAP, class_name="chat-markdown")
