"""Files sent with a message: checked by content, made safe, stored, and turned into model context.

The type comes from the bytes, never from the name: PNG, JPEG and WebP through Pillow, PDF through
pypdf, and anything that decodes as UTF-8 as text. Images are re-encoded (which drops their metadata)
and scaled to the provider's limits; PDFs and text files reach the model as text, within a budget.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from sqlalchemy import Engine

from chatbot_app.config import Settings
from chatbot_app.providers.base import ChatMessage
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


class AttachmentRejected(ValueError):
    """The file cannot be attached; str(error) says why, in words for the user. Nothing was stored."""


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_count: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> AttachmentLimits:
        return cls(settings.max_attachment_bytes, settings.max_attachments)


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


async def read_upload(upload: Any, limits: AttachmentLimits) -> PreparedAttachment:
    """Read one uploaded file (rx.UploadFile, starlette UploadFile: anything with `filename` and async
    `read(n)`) without reading more than the limit allows, then check it; raises AttachmentRejected."""
    name = display_name(getattr(upload, "filename", None) or "file")
    if (size := getattr(upload, "size", None)) is not None:
        check_size(name, size, limits)  # the declared size: refused before the body is read
    data = await upload.read(limits.max_bytes + 1)
    return prepare_attachment(name, data, limits)


def prepare_attachment(filename: str, data: bytes, limits: AttachmentLimits) -> PreparedAttachment:
    """Check `data` by its content and make it safe to store and send; raises AttachmentRejected."""
    name = display_name(filename)
    check_size(name, len(data), limits)
    if data.startswith(b"%PDF-"):
        kind, prepared = "pdf", _prepare_pdf(name, data)
    elif (image := _open_image(name, data)) is not None:
        kind, prepared = "image", _prepare_image(name, image)
    else:
        kind, prepared = "text", _prepare_text(name, data)
    claimed = _CLAIMED_KIND.get(PurePath(name).suffix.lower().lstrip("."))
    if claimed is not None and claimed != kind:
        raise AttachmentRejected(
            f"{name} does not contain {_KIND_WORDS[claimed]}, as its name says; it was not attached."
        )
    return prepared


def display_name(filename: str) -> str:
    """The file's base name, without any path a browser or client sent, and of a storable length."""
    name = PurePath(str(filename).replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return name[-200:] or "file"


def _open_image(name: str, data: bytes) -> Image.Image | None:
    """The image if Pillow recognises one (None if the bytes are not an image at all)."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None
    except Exception as exc:  # a truncated or malformed header
        raise AttachmentRejected(f"{name} looks like an image but could not be read.") from exc
    if image.format not in IMAGE_TYPES:
        raise AttachmentRejected(f"{name} is a {image.format} image; attach PNG, JPEG or WebP images.")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise AttachmentRejected(f"{name} is {image.width}x{image.height} pixels, which is too large to process.")
    return image


def _prepare_image(name: str, image: Image.Image) -> PreparedAttachment:
    """Re-encode (dropping EXIF, GPS and other metadata) and scale down to the provider's limits."""
    try:
        image = ImageOps.exif_transpose(image)  # keep the orientation the metadata described
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
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
    except AttachmentRejected:
        raise
    except Exception as exc:  # truncated pixel data, unsupported modes
        raise AttachmentRejected(f"{name} could not be read as an image.") from exc
    return PreparedAttachment(name, "image/png" if has_alpha else "image/jpeg", out.getvalue())


def _prepare_pdf(name: str, data: bytes) -> PreparedAttachment:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise AttachmentRejected(f"{name} is password-protected; attach an unprotected PDF.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except AttachmentRejected:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise AttachmentRejected(f"{name} could not be read as a PDF.") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    return PreparedAttachment(name, "application/pdf", data, text)


def _prepare_text(name: str, data: bytes) -> PreparedAttachment:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentRejected(
            f"{name} is not a supported file: attach text (UTF-8), PDF, or PNG, JPEG or WebP images."
        ) from None
    if "\x00" in text:
        raise AttachmentRejected(f"{name} is a binary file, not text; it was not attached.")
    return PreparedAttachment(name, "text/plain; charset=utf-8", data, text)


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
            body = f"{shown}\n[The file was cut here to fit the context: {len(shown):,} of {len(body):,} characters.]"
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
