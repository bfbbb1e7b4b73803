"""Files sent with a message: checked by content, made safe, stored, and turned into model context.

The type comes from the bytes, never from the name: PNG, JPEG and WebP through Pillow, PDF through
pypdf, and anything that decodes as UTF-8 as text. Images are re-encoded (which drops their metadata)
and scaled to the provider's limits; PDFs and text files reach the model as text, within a budget.

Cheap checks come first, in this order: the size, then the type the name and the browser declare
against the content's first bytes. Only then is anything decoded, and images and PDFs are decoded
in a worker process (services/file_checks.py) within budgets for pixels, pages, extracted text and
CPU time, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from PIL import Image, ImageOps
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from sqlalchemy import Engine

from chatbot_app.config import Settings
from chatbot_app.providers.base import ChatMessage
from chatbot_app.services.file_checks import FileCheckPool, OverBudget, PoolBusy
from chatbot_app.storage import attachments as store
from chatbot_app.storage.database import Database
from chatbot_app.storage.models import Attachment

log = logging.getLogger(__name__)

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
#: Groq accepts base64 images up to 4 MB and 33 megapixels; a 2048-pixel side stays well inside both.
MAX_IMAGE_SIDE = 2048
MAX_IMAGE_DATA_BYTES = 3 * 1024 * 1024
#: Refuse to decode anything larger (a small file can declare a huge canvas: a decompression bomb).
MAX_IMAGE_PIXELS = 50_000_000
MAX_PDF_PAGES = 300
#: Text kept from one file: far more than any model's context takes, and it bounds what a PDF's extraction does.
MAX_TEXT_CHARS = 1_000_000
#: Name extensions that promise a kind of content; a file whose bytes say otherwise is refused.
_CLAIMED_KIND = {
    **dict.fromkeys(("png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "heic"), "image"),
    "pdf": "pdf",
    **dict.fromkeys(("txt", "md", "markdown", "csv", "tsv", "json", "jsonl", "xml", "yaml", "yml", "toml"), "text"),
    **dict.fromkeys(
        ("py", "js", "ts", "tsx", "jsx", "html", "css", "sql", "sh", "c", "h", "cpp", "java", "go"), "text"
    ),
    **dict.fromkeys(("rs", "rb", "php", "swift", "kt", "ini", "cfg", "log", "tex", "rst"), "text"),
}
_KIND_WORDS = {"image": "a PNG, JPEG or WebP image", "pdf": "a PDF", "text": "a UTF-8 text file"}
#: Browser content types that promise a kind (others, such as application/octet-stream or video/mp2t for
#: a .ts file, promise nothing we check).
_CLAIMED_BY_TYPE = {"application/pdf": "pdf", "image/svg+xml": "text"}


class AttachmentRejected(ValueError):
    """The file cannot be attached; str(error) says why, in words for the user. Nothing was stored."""


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """How large and how many files may be, and the budgets their decoding keeps."""

    max_bytes: int = 10 * 1024 * 1024
    max_count: int = 5
    max_pixels: int = MAX_IMAGE_PIXELS
    max_pdf_pages: int = MAX_PDF_PAGES
    max_text_chars: int = MAX_TEXT_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> AttachmentLimits:
        return cls(
            settings.max_attachment_bytes,
            settings.max_attachments,
            settings.max_image_pixels,
            settings.max_pdf_pages,
            settings.max_file_text_chars,
        )


@dataclass(frozen=True, slots=True)
class PreparedAttachment:
    """A checked file, ready to store: images re-encoded, text extracted."""

    filename: str
    media_type: str
    data: bytes
    text: str | None = None

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


@dataclass(frozen=True, slots=True)
class AttachmentView:
    """What the UI shows for a stored attachment: a chip or a thumbnail, linked by `url`."""

    message_id: int
    filename: str
    media_type: str
    size: int
    url: str

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


def attachment_url(token: str) -> str:
    """Where the owner fetches an attachment: a random token, never the row id."""
    return f"/api/attachments/{token}"


# -- checking one file ----------------------------------------------------------------------------


def check_size(filename: str, size: int, limits: AttachmentLimits) -> None:
    """Refuse a file by its size alone (call it before reading the body when the size is known)."""
    if size > limits.max_bytes:
        raise AttachmentRejected(
            f"{display_name(filename)} is {_mib(size)}; files can be at most {_mib(limits.max_bytes)}."
        )
    if size == 0:
        raise AttachmentRejected(f"{display_name(filename)} is empty.")


def check_count(count: int, limits: AttachmentLimits) -> None:
    if count > limits.max_count:
        raise AttachmentRejected(f"A message can carry at most {limits.max_count} files; this one has {count}.")


def too_many_files(limits: AttachmentLimits, left_out: int) -> str:
    """The refusal of the files past a message's places (they were not read)."""
    files = "file was" if left_out == 1 else "files were"
    return f"A message can carry at most {limits.max_count} files: {left_out} {files} not attached."


def sniffed_format(data: bytes) -> str | None:
    """What the first bytes say the file is: "PDF", an image format as Pillow names it, or None (maybe text)."""
    if data.startswith(b"%PDF-"):
        return "PDF"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    # Images we do not take, recognised so that the refusal can name them.
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return "AVIF" if data[8:12] == b"avif" else "HEIF"
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00" and len(data) > 26:
        return "BMP"
    return None


def check_declared_type(filename: str, data: bytes, content_type: str | None = None) -> str:
    """The file's format from its first bytes ("PDF", "PNG", "JPEG", "WEBP", or "TEXT" to be decoded as such),
    after checking it against what the name's extension and the browser's content type promise.

    Nothing is decoded: this runs before any work, and raises AttachmentRejected.
    """
    name = display_name(filename)
    found = sniffed_format(data)
    kind = "pdf" if found == "PDF" else "text" if found is None else "image"
    claims = [
        (_CLAIMED_KIND.get(PurePath(name).suffix.lower().lstrip(".")), "as its name says"),
        (_claimed_by_type(content_type), f"as its type ({content_type}) says"),
    ]
    for claimed, said in claims:
        if claimed is not None and claimed != kind:
            raise AttachmentRejected(f"{name} does not contain {_KIND_WORDS[claimed]}, {said}; it was not attached.")
    if kind == "image" and found not in IMAGE_TYPES:
        raise AttachmentRejected(f"{name} is a {found} image; attach PNG, JPEG or WebP images.")
    return found or "TEXT"


def _claimed_by_type(content_type: str | None) -> str | None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _CLAIMED_BY_TYPE:
        return _CLAIMED_BY_TYPE[media_type]
    if media_type.startswith("image/"):
        return "image"
    if media_type.startswith("text/"):
        return "text"
    return None


async def check_upload(
    filename: str,
    data: bytes,
    limits: AttachmentLimits,
    pool: FileCheckPool,
    content_type: str | None = None,
) -> PreparedAttachment:
    """Check one file and make it safe, off the event loop; raises AttachmentRejected.

    The size and the declared type are checked here first; a text file is decoded here (a C-speed
    UTF-8 check); images and PDFs are decoded in `pool`'s workers, within their budgets.
    """
    name = display_name(filename)
    check_size(name, len(data), limits)
    found = check_declared_type(name, data, content_type)
    if found == "TEXT":
        return await _prepare_text_in_steps(name, data, limits)
    try:
        return await pool.run(prepare_attachment, name, data, limits, content_type)
    except OverBudget as exc:
        raise AttachmentRejected(_over_budget(name, exc)) from None
    except PoolBusy:
        raise AttachmentRejected(_busy(name)) from None


def checking_in(pool: FileCheckPool, limits: AttachmentLimits) -> Callable[[str, bytes], PreparedAttachment]:
    """A blocking check of (name, bytes) in `pool`, for code on a worker thread (an import's attachments)."""

    def check(filename: str, data: bytes) -> PreparedAttachment:
        name = display_name(filename)
        check_size(name, len(data), limits)
        if check_declared_type(name, data) == "TEXT":
            return _prepare_text(name, data, limits)
        try:
            return pool.run_blocking(prepare_attachment, name, data, limits)
        except OverBudget as exc:
            raise AttachmentRejected(_over_budget(name, exc)) from None
        except PoolBusy:
            raise AttachmentRejected(_busy(name)) from None

    return check


def _over_budget(name: str, exc: OverBudget) -> str:
    return f"{name} takes too long to read (over {exc.cpu_s} s of processing); it was not attached."


def _busy(name: str) -> str:
    return f"{name} was not attached: the server is busy reading other files. Try again in a moment."


async def read_upload(upload: Any, limits: AttachmentLimits) -> bytes:
    """The bytes of one uploaded file (rx.UploadFile, starlette UploadFile: anything with `filename` and async
    `read(n)`), read no further than the limit allows; raises AttachmentRejected for a file over it."""
    name = display_name(getattr(upload, "filename", None) or "file")
    if (size := getattr(upload, "size", None)) is not None:
        check_size(name, size, limits)  # the declared size: refused before the body is read
    data = await upload.read(limits.max_bytes + 1)
    check_size(name, len(data), limits)
    return data


def prepare_attachment(
    filename: str, data: bytes, limits: AttachmentLimits, content_type: str | None = None
) -> PreparedAttachment:
    """Check `data` by its content and make it safe to store and send; raises AttachmentRejected.

    CPU-heavy for images and PDFs: async code calls check_upload, which runs this in a worker process.
    """
    name = display_name(filename)
    check_size(name, len(data), limits)
    found = check_declared_type(name, data, content_type)
    if found == "PDF":
        return _prepare_pdf(name, data, limits)
    if found == "TEXT":
        return _prepare_text(name, data, limits)
    return _prepare_image(name, _open_image(name, data, found, limits))


def display_name(filename: str) -> str:
    """The file's base name, without any path a browser or client sent, and of a storable length."""
    name = PurePath(str(filename).replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return name[-200:] or "file"


def _open_image(name: str, data: bytes, found: str, limits: AttachmentLimits) -> Image.Image:
    """The image, opened as the format its first bytes named (its header read, its pixels not yet)."""
    try:
        image = Image.open(io.BytesIO(data), formats=[found])
    except Exception as exc:  # a truncated or malformed header
        raise AttachmentRejected(f"{name} looks like an image but could not be read.") from exc
    if image.width * image.height > limits.max_pixels:
        raise AttachmentRejected(f"{name} is {image.width}x{image.height} pixels, which is too large to process.")
    return image


def _prepare_image(name: str, image: Image.Image) -> PreparedAttachment:
    """Re-encode (dropping EXIF, GPS and other metadata) and scale down to the provider's limits."""
    try:
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        # JPEG only: decode at a reduced scale when the image is far larger than it will be sent.
        image.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), reducing_gap=3.0)  # in place: one full-size decode
        image = image.convert("RGBA" if has_alpha else "RGB")
        image = ImageOps.exif_transpose(image)  # keep the orientation the metadata described
        side = MAX_IMAGE_SIDE
        while True:
            scaled = image.copy()
            scaled.thumbnail((side, side))
            out = io.BytesIO()
            if has_alpha:
                scaled.save(out, format="PNG", optimize=True)
            else:
                scaled.save(out, format="JPEG", quality=85)
            if out.tell() <= MAX_IMAGE_DATA_BYTES or side <= 256:
                break
            side //= 2
    except MemoryError:
        raise AttachmentRejected(f"{name} needs too much memory to process; it was not attached.") from None
    except Exception as exc:  # truncated pixel data, unsupported modes
        raise AttachmentRejected(f"{name} could not be read as an image.") from exc
    return PreparedAttachment(name, "image/png" if has_alpha else "image/jpeg", out.getvalue())


#: The side of a composer chip's thumbnail, in pixels (shown at half that: sharp on dense screens).
THUMBNAIL_SIDE = 64


def thumbnail_data_url(image_data: bytes, side: int = THUMBNAIL_SIDE) -> str:
    """A small WebP `data:` URL of a prepared (already checked and re-encoded) image; "" if it cannot be made.

    CPU work: call it off the event loop.
    """
    try:
        with Image.open(io.BytesIO(image_data)) as image:
            image.thumbnail((side, side))
            out = io.BytesIO()
            image.save(out, format="WEBP", quality=70)
    except Exception:  # a thumbnail is decoration: without one, the chip shows an icon
        log.warning("could not make a thumbnail", exc_info=True)
        return ""
    return "data:image/webp;base64," + base64.b64encode(out.getvalue()).decode()


def _prepare_pdf(name: str, data: bytes, limits: AttachmentLimits) -> PreparedAttachment:
    """The PDF as stored, and its text: at most `max_pdf_pages` pages, text cut at `max_text_chars`."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentRejected(f"{name} is password-protected; attach an unprotected PDF.")
        if (count := len(reader.pages)) > limits.max_pdf_pages:
            raise AttachmentRejected(f"{name} has {count:,} pages; PDFs can have at most {limits.max_pdf_pages:,}.")
        pages: list[str] = []
        room = limits.max_text_chars
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            if text:
                pages.append(text[:room])
                room -= len(text) + 2
                if room <= 0:  # enough text: the rest of the pages are not read at all
                    break
    except AttachmentRejected:
        raise
    except MemoryError:
        raise AttachmentRejected(f"{name} needs too much memory to process; it was not attached.") from None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise AttachmentRejected(f"{name} could not be read as a PDF.") from exc
    return PreparedAttachment(name, "application/pdf", data, "\n\n".join(pages))


_NOT_SUPPORTED = "{name} is not a supported file: attach text (UTF-8), PDF, or PNG, JPEG or WebP images."
_BINARY = "{name} is a binary file, not text; it was not attached."


def _prepare_text(name: str, data: bytes, limits: AttachmentLimits) -> PreparedAttachment:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentRejected(_NOT_SUPPORTED.format(name=name)) from None
    if "\x00" in text:
        raise AttachmentRejected(_BINARY.format(name=name))
    return PreparedAttachment(name, "text/plain; charset=utf-8", data, text[: limits.max_text_chars])


#: Bytes of a text file decoded between two turns of the event loop (about a millisecond's work).
TEXT_STEP_BYTES = 256 * 1024


async def _prepare_text_in_steps(name: str, data: bytes, limits: AttachmentLimits) -> PreparedAttachment:
    """_prepare_text for the event loop: the UTF-8 check runs a step at a time, other events between steps.

    A 10 MiB file takes some 30 ms to decode; in one go, that is every other tab's frames held up as long.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    view = memoryview(data)
    parts: list[str] = []
    room = limits.max_text_chars
    for start in range(0, len(data), TEXT_STEP_BYTES):
        end = start + TEXT_STEP_BYTES
        try:
            piece = decoder.decode(view[start:end], final=end >= len(data))
        except UnicodeDecodeError:
            raise AttachmentRejected(_NOT_SUPPORTED.format(name=name)) from None
        if "\x00" in piece:
            raise AttachmentRejected(_BINARY.format(name=name))
        if room > 0:
            parts.append(piece[:room])
            room -= len(parts[-1])
        await asyncio.sleep(0)  # a turn for the loop's other work
    return PreparedAttachment(name, "text/plain; charset=utf-8", data, "".join(parts))


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 / 10 else f"{size:,} bytes"


# -- model context --------------------------------------------------------------------------------


def text_budget_chars(context_budget_tokens: int) -> int:
    """Characters of file text one message may bring: half the context budget, about four characters a token."""
    return max(context_budget_tokens * 2, 1000)


def file_notices(attachments: Sequence[PreparedAttachment], budget_chars: int) -> list[str]:
    """What the user should be told before sending: files cut to fit the context, PDFs without text."""
    notices: list[str] = []
    remaining = budget_chars
    for a in attachments:
        if a.text is None:
            continue
        if a.media_type == "application/pdf" and not a.text:
            notices.append(f"{a.filename} has no text that can be read (a scanned PDF?); the model will not see it.")
        elif len(a.text) > remaining:
            notices.append(
                f"{a.filename} is too long for the model's context: only its first {max(remaining, 0):,} "
                f"of {len(a.text):,} characters are sent."
            )
        remaining -= len(a.text)
    return notices


def message_with_files(
    role: str, text: str, files: Sequence[Attachment | PreparedAttachment], budget_chars: int
) -> ChatMessage:
    """A stored message and its files as one provider message: file text appended, images as data: URLs."""
    parts = [text] if text else []
    remaining = budget_chars
    images: list[str] = []
    for f in files:
        if f.media_type.startswith("image/"):
            images.append(f"data:{f.media_type};base64,{base64.b64encode(f.data).decode('ascii')}")
            continue
        body = f.text or ""
        label = "PDF" if f.media_type == "application/pdf" else "text file"
        header = f"--- Attached {label}: {f.filename} ---"
        if len(body) > remaining:
            shown = body[: max(remaining, 0)]
            body = (
                f"{shown}\n[The file was cut here to fit the context: {len(shown):,} of {len(body):,} characters. "
                "If you have the search_files tool, it searches the whole file.]"
            )
        remaining -= len(f.text or "")
        parts.append(f"{header}\n{body}")
    return ChatMessage(role, "\n\n".join(parts), tuple(images))  # type: ignore[arg-type]


def without_images(message: ChatMessage) -> ChatMessage:
    """The message for a model that cannot see images: each image replaced by a note saying so."""
    if not message.images:
        return message
    note = f"[{len(message.images)} image(s) attached, not shown: this model does not accept images.]"
    return ChatMessage(message.role, f"{message.content}\n\n{note}".strip(), ())


def vision_refusal(model: str, vision_models: Sequence[str]) -> str:
    """The message for an image sent to a model that cannot see it."""
    if not vision_models:
        return f"{model} cannot read images, and no model that can is configured (CHATBOT_VISION_MODELS)."
    return f"{model} cannot read images. Choose a model that can: {', '.join(vision_models)}."


# -- reading stored files, owner-scoped ------------------------------------------------------------


class AttachmentStore:
    """Owner-scoped reads of stored attachments, for the UI and the download route."""

    def __init__(self, engine: Engine) -> None:
        self._db = Database(engine).run

    async def views(
        self, owner_id: str, conversation_id: str, message_ids: Sequence[int]
    ) -> dict[int, list[AttachmentView]]:
        """The attachments of the given messages of the owner's conversation (none for a foreign one)."""
        rows = await self._db(lambda s: store.attachment_summaries(s, owner_id, conversation_id, message_ids))
        views: dict[int, list[AttachmentView]] = {}
        for message_id, filename, media_type, size, token in rows:
            views.setdefault(message_id, []).append(
                AttachmentView(message_id, filename, media_type, size, attachment_url(token))
            )
        return views

    async def by_token(self, token: str, owner_id: str | None = None) -> Attachment | None:
        """The attachment a URL token names; with `owner_id`, only if that owner owns it."""
        if not 20 <= len(token) <= 64:
            return None
        return await self._db(lambda s: store.attachment_by_token(s, token, owner_id))
