"""Files, voice and reasoning in the browser: what a person attaches, says and sees, and what the model gets."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import app_of_its_own
from tests.e2e.live_app import LiveApp
from tests.fakes.fake_llm_server import FAKE_TRANSCRIPT, Behaviour, FakeLLMServer
from tests.fakes.sample_files import make_image, make_pdf, make_wav

pytestmark = pytest.mark.e2e

#: Small limits, so an oversized file is small too (the server refuses it; the browser's limit is the default).
MAX_BYTES = 300_000
FILE_INPUT = "#composer input[type=file]"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[LiveApp]:
    with app_of_its_own(
        tmp_path_factory,
        fake_llm,
        "media_app",
        CHATBOT_LOCAL_MODEL="off",
        CHATBOT_VISION_MODELS="fake-large",
        CHATBOT_MAX_ATTACHMENT_BYTES=str(MAX_BYTES),
    ) as running:
        yield running


def attach(page, *files: tuple[str, str, bytes]) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files(FILE_INPUT, [{"name": n, "mimeType": m, "buffer": b} for n, m, b in files])


def notice(page) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#notice")
    return page.inner_text("#notice")


def choose_model(page, value: str) -> None:  # type: ignore[no-untyped-def]
    """Pick a model once the menu is there.

    A first visit's model menu can be lost (SettingsState.sync meets no identity yet and answers with a
    reload), so the page is loaded again until the menu shows, a bounded number of times.
    """
    for _ in range(3):
        page.reload()
        page.wait_for_selector("#chat-input")
        try:
            page.wait_for_function("document.querySelectorAll('#model-select option').length > 0", timeout=10_000)
            break
        except Exception:  # playwright's TimeoutError: load again
            continue
    page.select_option("#model-select", value)
    page.wait_for_function(f"document.querySelector('#model-select').value === {value!r}")
    page.wait_for_load_state("networkidle")


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("#chat-input", text)
    page.keyboard.press("Enter")


def wait_for_replies(page, count: int) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        f"document.querySelectorAll('[data-role=assistant][data-status=complete]').length >= {count}"
    )


def test_text_pdf_and_image_are_sent_in_the_right_form(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    image = make_image(64, 48, "PNG")
    attach(
        page,
        ("notes.txt", "text/plain", b"The launch code is tangerine.\n"),
        ("report.pdf", "application/pdf", make_pdf("Quarterly revenue rose by 12 percent.")),
        ("photo.png", "image/png", image),
    )
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 3")
    assert page.locator("[data-testid=attachment]").first.inner_text().startswith("notes.txt")

    # One removed, then attached again: chips are removable.
    page.locator("[data-testid=attachment] .remove-attachment").first.click()
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 2")
    attach(page, ("notes.txt", "text/plain", b"The launch code is tangerine.\n"))
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 3")

    fake.enqueue_stream(Behaviour(text="I read all three."))
    send(page, "What do these say?")
    wait_for_replies(page, 1)
    assert page.locator("[data-testid=attachment]").count() == 0  # sent: the composer let them go

    user = page.locator("[data-role=user]").last
    assert user.locator("[data-testid=message-attachment]").count() == 3
    thumbnail = user.locator("[data-testid=message-attachment][data-kind=image] img")
    thumbnail.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 64", arg=thumbnail.element_handle())

    content = fake.streamed_requests()[-1].body["messages"][-1]["content"]
    assert isinstance(content, list), content
    texts = " ".join(p["text"] for p in content if p["type"] == "text")
    assert "What do these say?" in texts
    assert "tangerine" in texts and "Attached text file: notes.txt" in texts
    assert "revenue rose by 12 percent" in texts and "Attached PDF: report.pdf" in texts
    images = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    assert len(images) == 1 and images[0].startswith("data:image/")
    assert base64.b64decode(images[0].split(",", 1)[1])  # re-encoded by the server, still an image


def test_an_oversized_file_and_a_mismatched_file_are_refused(page) -> None:  # type: ignore[no-untyped-def]
    attach(page, ("big.txt", "text/plain", b"x" * (MAX_BYTES + 50_000)))
    assert "at most" in notice(page) and "big.txt" in notice(page)
    attach(page, ("picture.png", "image/png", b"this is only text pretending to be an image"))
    page.wait_for_function("document.querySelector('#notice').innerText.includes('picture.png')")
    assert "does not contain" in notice(page)
    assert page.locator("[data-testid=attachment]").count() == 0


def test_an_image_for_a_model_that_cannot_see_is_refused_naming_the_ones_that_can(
    page, app: LiveApp, fake: FakeLLMServer
) -> None:  # type: ignore[no-untyped-def]
    choose_model(page, "groq:fake-small")
    attach(page, ("photo.jpg", "image/jpeg", make_image(32, 32, "JPEG")))
    page.wait_for_selector("[data-testid=attachment]")
    assert "fake-large" in notice(page)  # told at once
    send(page, "What is in this picture?")
    page.wait_for_function("document.querySelector('#notice')?.innerText.includes('cannot read images')")
    assert "fake-large" in notice(page)
    assert page.input_value("#chat-input") == "What is in this picture?"  # the message and file stay
    assert page.locator("[data-testid=attachment]").count() == 1
    assert fake.streamed_requests() == []


def test_an_image_chip_shows_a_thumbnail(page) -> None:  # type: ignore[no-untyped-def]
    attach(page, ("photo.png", "image/png", make_image(64, 48, "PNG")), ("notes.txt", "text/plain", b"plain\n"))
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 2")
    thumbnail = page.locator("[data-testid=attachment] img.chip-thumbnail")
    assert thumbnail.count() == 1  # the image's chip only
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    assert thumbnail.get_attribute("src").startswith("data:image/webp;base64,")


def test_an_image_for_a_text_model_says_why_beside_send_and_offers_the_ways_out(  # type: ignore[no-untyped-def]
    page, fake: FakeLLMServer
) -> None:
    choose_model(page, "groq:fake-small")
    attach(page, ("photo.jpg", "image/jpeg", make_image(32, 32, "JPEG")), ("notes.txt", "text/plain", b"kept\n"))
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 2")
    page.fill("#chat-input", "What is in this picture?")
    page.wait_for_selector("#send-blocked-reason:has-text('fake-small cannot read images')")
    assert page.is_disabled("#send-button")
    # Only models the picker offers are named: this server's one vision model.
    assert page.inner_text("#switch-to-vision-model") == "Switch to fake-large"
    assert "fake-large" in notice(page) and "llama" not in notice(page)

    page.click("#switch-to-vision-model")
    page.wait_for_function("document.querySelector('#model-select').value === 'groq:fake-large'")
    page.wait_for_selector("#send-blocked", state="detached")
    assert page.is_enabled("#send-button")

    choose_model(page, "groq:fake-small")  # blocked again (the page reloads; the files wait on the server)
    page.wait_for_function("document.querySelectorAll('[data-testid=attachment]').length === 2")
    page.fill("#chat-input", "What do the notes say?")
    fake.enqueue_stream(Behaviour(text="They say kept."))
    page.click("#send-without-images")
    wait_for_replies(page, 1)
    sent = page.locator("[data-role=user]").last
    assert sent.locator("[data-testid=message-attachment]").count() == 1  # the notes went, the image did not
    assert sent.locator("[data-testid=message-attachment][data-kind=image]").count() == 0
    content = fake.streamed_requests()[-1].body["messages"][-1]["content"]
    assert "kept" in str(content) and "image_url" not in str(content)


def test_an_audio_file_is_transcribed_into_the_composer(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    attach(page, ("question.wav", "audio/wav", make_wav(0.5)))
    page.wait_for_function(f"document.querySelector('#chat-input').value === {FAKE_TRANSCRIPT!r}")
    assert page.locator("[data-testid=attachment]").count() == 0
    try:
        page.wait_for_function("document.querySelector('#send-button')?.disabled === false")  # the text can go
    except Exception:
        shown = page.evaluate(
            "[...document.querySelectorAll('button[aria-label=Send]')].map(b => `${b.id}:${b.disabled}`).join()"
            " + ' | ' + (document.querySelector('#notice')?.innerText ?? '')"
            " + ' | ' + (document.querySelector('#send-blocked')?.innerText ?? '')"
        )
        raise AssertionError(f"Send buttons (id:disabled) | notice | blocked: {shown}") from None
    heard = [r for r in fake.requests if r.path.endswith("/audio/transcriptions")]
    assert len(heard) == 1 and heard[0].body["file"].startswith(b"RIFF")


def test_the_microphone_records_and_the_transcript_lands_in_the_box(page, app: LiveApp, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.click("#mic-button")
    page.wait_for_selector("#mic-button[data-recording=true]")
    page.click("#mic-button")
    try:
        page.wait_for_function(f"document.querySelector('#chat-input').value === {FAKE_TRANSCRIPT!r}")
    except Exception:
        shown = page.inner_text("#notice") if page.query_selector("#notice") else ""
        raise AssertionError(f"notice {shown!r}; console {console[-5:]} log {app.backend.log_text()[-999:]}") from None
    heard = [r for r in fake.requests if r.path.endswith("/audio/transcriptions")]
    assert len(heard) == 1 and heard[0].body["file"]


def test_reasoning_is_collapsed_then_expanded(page, fake: FakeLLMServer) -> None:  # type: ignore[no-untyped-def]
    thoughts = "First I add two and two, which makes four, then I check the sum once more."
    fake.enqueue_stream(Behaviour(text="The answer is 4.", reasoning=thoughts, tokens_per_s=400))
    send(page, "What is 2 + 2?")
    wait_for_replies(page, 1)
    section = page.locator("[data-role=assistant] [data-testid=reasoning]")
    assert section.count() == 1
    assert section.evaluate("el => el.open") is False
    assert not page.get_by_text("then I check the sum").is_visible()
    assert "Thought for" in section.locator("summary").inner_text()

    section.locator("summary").click()
    assert section.evaluate("el => el.open") is True
    assert page.get_by_text("then I check the sum").is_visible()
    # The answer itself holds none of the reasoning.
    without_reasoning = "el => { const c = el.cloneNode(true); c.querySelector('details').remove(); return c.innerText}"
    answer = page.locator("[data-role=assistant]").evaluate(without_reasoning)
    assert "The answer is 4." in answer and "add two and two" not in answer


def test_a_microphone_that_cannot_be_opened_is_reported(page) -> None:  # type: ignore[no-untyped-def]
    page.context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'))"
    )
    page.reload()
    page.click("#mic-button")
    page.wait_for_function("(document.querySelector('#notice') || {}).innerText?.includes('could not record')")
    assert "NotAllowedError" in notice(page)
    assert page.locator("#mic-button[data-recording=true]").count() == 0
