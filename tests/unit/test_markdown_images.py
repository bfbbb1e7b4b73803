"""Images in model output are shown as links to their own target and never loaded (issue 11)."""

from __future__ import annotations

from chatbot_app.components.markdown import markdown


def image_renderer() -> str:
    """The JavaScript function react-markdown calls for each image, as the page compiles it."""
    return str(markdown("x").children[0].format_component_map()["img"])  # type: ignore[attr-defined]


def test_an_image_becomes_a_plain_link_to_its_own_source() -> None:
    renderer = image_renderer()

    # The target is read from each image at render time (it used to be fixed at compile time: "#").
    assert 'jsx("a",' in renderer
    assert "href:props.src" in renderer
    assert 'href:"#"' not in renderer
    assert "props.alt" in renderer  # the alt text labels the link


def test_no_image_element_is_rendered() -> None:
    renderer = image_renderer()

    assert '"img"' not in renderer and "Image," not in renderer
    assert 'target:"_blank"' in renderer and "noopener" in renderer
