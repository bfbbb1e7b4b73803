"""Markdown for model output: no raw HTML, and code blocks (language label, copy button) that never lose text.

Reflex's own code-block renderer reads a block's text as `String(children)`. A block with no text (an
empty fence, or one that has only just opened while a reply streams) has no children at all, so it
showed the word "undefined"; and the words after a fence's language ("```js and the end") were dropped
with the rest of the info string. `ChatMarkdown` renders an empty block as empty and shows the whole
info string; services/markdown_fences.py moves misplaced fences before a stored reply is shown.

Nothing in the component map uses a React hook (the code theme is CSS variables, not the colour-mode
context): the map is called once per message inside a list, and hooks there changed order between renders.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.vars import Var
from reflex_base.vars.base import VarData
from reflex_base.vars.sequence import LiteralArrayVar
from reflex_components_code.code import Theme
from reflex_components_core.core.markdown_component_map import MarkdownComponentMap
from reflex_components_core.el.elements.inline import A
from reflex_components_markdown.markdown import Markdown, Plugin

from chatbot_app.state.feedback import CopyFeedbackState

#: The fence's whole info string ("js", or "and the end." after a misplaced fence), set by the renderer below.
_INFO = Var(_js_expr="_info", _var_type=str)
_LANGUAGE = Var(_js_expr="_language", _var_type=str)

#: Prism token colours as CSS variables (assets/chat.css), so one theme follows light and dark mode without a hook.
CODE_THEME: dict[str, dict[str, str]] = {
    'code[class*="language-"]': {
        "color": "var(--gray-12)",
        "background": "none",
        "fontFamily": "var(--code-font-family)",
        "fontSize": "0.875em",
        "lineHeight": "1.5",
        "whiteSpace": "pre-wrap",
        "wordBreak": "break-word",
        "tabSize": "4",
    },
    'pre[class*="language-"]': {
        "color": "var(--gray-12)",
        "background": "var(--gray-a3)",
        "fontFamily": "var(--code-font-family)",
        "overflow": "auto",
    },
    "comment": {"color": "var(--gray-11)", "fontStyle": "italic"},
    "prolog": {"color": "var(--gray-11)"},
    "doctype": {"color": "var(--gray-11)"},
    "cdata": {"color": "var(--gray-11)"},
    "punctuation": {"color": "var(--gray-11)"},
    "keyword": {"color": "var(--code-purple)"},
    "atrule": {"color": "var(--code-purple)"},
    "important": {"color": "var(--code-purple)"},
    "string": {"color": "var(--code-green)"},
    "char": {"color": "var(--code-green)"},
    "attr-value": {"color": "var(--code-green)"},
    "regex": {"color": "var(--code-green)"},
    "number": {"color": "var(--code-orange)"},
    "boolean": {"color": "var(--code-orange)"},
    "constant": {"color": "var(--code-orange)"},
    "symbol": {"color": "var(--code-orange)"},
    "function": {"color": "var(--code-blue)"},
    "class-name": {"color": "var(--code-amber)"},
    "builtin": {"color": "var(--code-cyan)"},
    "tag": {"color": "var(--code-red)"},
    "selector": {"color": "var(--code-red)"},
    "property": {"color": "var(--code-red)"},
    "attr-name": {"color": "var(--code-orange)"},
    "variable": {"color": "var(--code-red)"},
    "operator": {"color": "var(--code-cyan)"},
    "deleted": {"color": "var(--code-red)"},
    "inserted": {"color": "var(--code-green)"},
    "bold": {"fontWeight": "bold"},
    "italic": {"fontStyle": "italic"},
}


class ChatMarkdown(Markdown):
    """react-markdown whose code-block renderer treats a block without text as empty, never "undefined"."""

    def _get_codeblock_fn_var(self) -> Var:
        custom_code = self._get_map_fn_custom_code_from_children(self.get_component("pre"))
        var_data = VarData.merge(*[code._get_all_var_data() for code in custom_code if isinstance(code, Var)])
        # The same steps as Reflex's renderer, with no text read as "" and the info string kept whole.
        body = f"""
const {{node: childNode, className, children: components, ...props}} = rest.children?.props ?? {{}};
const children = (Array.isArray(components) ? components.join('') : String(components ?? '')).replace(/\\n$/, '');
const match = (className || '').match(/language-(?<lang>\\S+)/);
let {_LANGUAGE} = match ? match[1] : '';
const {_INFO} = [{_LANGUAGE}, childNode?.data?.meta].filter(Boolean).join(' ');
{"; ".join(map(str, custom_code))};
return {self.format_component("pre", language=_LANGUAGE)};
"""
        return MarkdownComponentMap.create_map_fn_var(
            fn_body=Var(_js_expr=body.replace("\n", " ")),
            fn_args=["node", "...rest"],
            explicit_return=True,
            var_data=var_data,
        )


def _code_block(code: Any, language: Any = _LANGUAGE, **props: Any) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.text(_INFO, class_name="code-language", size="1"),
            rx.icon_button(
                rx.icon("copy", size=14),
                type="button",
                variant="ghost",
                size="1",
                color_scheme="gray",
                aria_label="Copy code",
                title="Copy code",
                class_name="code-copy",
                on_click=[rx.set_clipboard(code), CopyFeedbackState.copied("Code")],
            ),
            justify="between",
            align="center",
            class_name="code-header",
        ),
        rx.code_block(
            code,
            language=language,
            theme=Var.create(CODE_THEME).to(Theme),
            wrap_long_lines=True,
            margin="0",
            padding="0.75em 1em",
            border_radius="0",
        ),
        class_name="code-block",
        **props,
    )


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


def _table(*children: Any, **props: Any) -> rx.Component:
    # A wide table scrolls inside its own box rather than widening the page (phones).
    return rx.box(rx.el.table(*children, **props), class_name="md-table")


COMPONENT_MAP = {"pre": _code_block, "img": _image_as_link, "table": _table}

# "$5 and $10" is money, not math: only $$...$$ is.
_REMARK_PLUGINS = LiteralArrayVar.create(
    [LiteralArrayVar.create([Plugin.math, {"singleDollarTextMath": False}]), Plugin.gfm]
)
_REHYPE_PLUGINS = LiteralArrayVar.create([Plugin.katex, Plugin.unwrap_images])


def markdown(text: Any) -> rx.Component:
    """Render untrusted Markdown: raw HTML stays text, never markup (react-markdown without rehype-raw)."""
    return rx.el.div(
        ChatMarkdown.create(
            text,
            component_map=COMPONENT_MAP,
            remark_plugins=_REMARK_PLUGINS,
            rehype_plugins=_REHYPE_PLUGINS,
        ),
        class_name="chat-markdown",
    )


@rx.memo
def message_markdown(content: rx.Var[str]) -> rx.Component:
    """`markdown`, parsed again only when its text changes (React.memo): a long history re-renders cheaply."""
    return markdown(content)
