"""What a file is, read from its first bytes (magic numbers), never from its name or the Content-Type a browser
sends: a page or a script named "photo.jpg" is not a photo."""

from __future__ import annotations


def image_type(data: bytes) -> str | None:
    """The image type the bytes themselves say (JPEG, PNG or WebP), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_or_pdf_type(data: bytes) -> str | None:
    """An image type as above, "application/pdf" for a PDF, or None."""
    if data[:5] == b"%PDF-":
        return "application/pdf"
    return image_type(data)
