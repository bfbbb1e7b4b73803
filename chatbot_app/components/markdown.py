"""Markdown for model output: no raw HTML, highlighted code blocks with a copy button."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.vars import Var
from reflex_components_core.el.elements.inline import A


def _code_block(code: Any, **props: Any) -> rx.Component:
    return rx.code_block(code, can_copy=True, wrap_long_lines=True, margin_y="0.75em", **props)


#: The image's own attributes, read in the browser for each image (react-markdown has already passed
#: `src` through its URL filter, which drops javascript: and other unsafe schemes).
_IMAGE_SRC = Var(_js_expr="props.src", _var_type=str)
_IMAGE_LABEL = Var(_js_expr="(props.alt || props.src || 'image')", _var_type=str)


def _image_as_link(*children: Any, **props: Any) -> rx.Component:
    # Images in model output are never fetched (tracking pixels, exfiltration through the URL): each is
    # shown as a link to its own target. The target comes from the message at render time; a value
    # taken here would be fixed when the page compiles, the same for every image.
    # The plain <a> element: rx.el.a is React Router's Link, which needs `to` and routes inside the app.
    return A.create(
        "Image: ",
        _IMAGE_LABEL,
        href=_IMAGE_SRC,
        target="_blank",
        rel="noopener noreferrer nofollow",
        class_name="md-image",
    )


COMPONENT_MAP = {"pre": _code_block, "img": _image_as_link}


def markdown(text: Any) -> rx.Component:
    """Render untrusted Markdown: raw HTML stays text, never markup."""
    return rx.markdown(text, use_raw=False, component_map=COMPONENT_MAP, class_name="chat-markdown")
