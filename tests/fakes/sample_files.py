"""Small real files made at test time: PDFs with a text layer, images with metadata, WAV audio."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib

from PIL import Image


def make_pdf(*lines: str) -> bytes:
    """A one-page PDF whose text layer holds `lines` (Helvetica), built by hand with a correct xref."""
    text_ops = " ".join(f"({_pdf_escape(line)}) Tj 0 -28 Td" for line in lines)
    stream = f"BT /F1 20 Tf 72 720 Td {text_ops} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return _pdf_file(objects)


def make_shared_stream_pdf(pages: int, operations: int = 5000) -> bytes:
    """A small PDF whose `pages` pages all draw one compressed content stream of `operations` text operations:
    a few KB that cost a PDF reader the whole stream's work once per page (the review's upload attack)."""
    ops = " ".join(f"({n % 10}) Tj 1 0 Td" for n in range(operations))
    stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td {ops} ET".encode("latin-1"), 9)
    kids = " ".join(f"{4 + n} 0 R" for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids.encode(), pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        *(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R"
            b" /Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + pages)
            for _ in range(pages)
        ),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return _pdf_file(objects)


def _pdf_file(objects: list[bytes]) -> bytes:
    """A PDF of these numbered objects (1 is the catalog), with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_image(width: int = 64, height: int = 48, fmt: str = "PNG", *, with_gps: bool = False) -> bytes:
    """A gradient image; `with_gps` adds EXIF metadata (a camera make and a GPS block) to strip."""
    small = Image.new("RGB", (16, 16))
    small.putdata([(x * 16, y * 16, 128) for y in range(16) for x in range(16)])
    image = small.resize((width, height), Image.Resampling.BILINEAR)  # fast even for large sizes
    out = io.BytesIO()
    if with_gps:
        exif = Image.Exif()
        exif[0x010F] = "SecretCam"  # Make
        exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPSInfo
        image.save(out, format=fmt, exif=exif.tobytes())
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def make_wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A mono 16-bit WAV of a 440 Hz tone."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        wav.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return out.getvalue()
