"""A notice as HTML (print CSS, A4) and as PDF from the same template (WeasyPrint). No database, no HTTP: the
content was gathered before, and the same content always gives the same page.

WeasyPrint needs Debian's `fonts-noto-cjk` (the Chinese glyphs) and `libharfbuzz-subset0` (to embed only the
glyphs used); `missing_parts()` says which is missing and how to install it."""

from __future__ import annotations

import ctypes.util
import io
import shutil
import subprocess
import unicodedata
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.core.clock import to_local
from app.store.service.cards import qr_svg

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "notices"
# The only places WeasyPrint may read from (ASVS 12.6.1, 5.2.6): the app's own templates and static files.
FETCH_ROOTS = (Path(__file__).resolve().parents[2] / "templates", Path(__file__).resolve().parents[2] / "static")
INSTALL = "apt-get install -y fonts-noto-cjk libharfbuzz-subset0"

_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def width(text: str) -> int:
    """Columns the text takes in a monospaced CJK font: a Chinese character two, a digit or letter one."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: object, cols: int) -> str:
    """The text cut to `cols` columns (a character that would straddle the edge is left out)."""
    out, used = [], 0
    for ch in str(text):
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > cols:
            break
        out.append(ch)
        used += w
    return "".join(out)


def lcol(text: object, cols: int) -> str:
    """Left-aligned in `cols` columns (the long tables are ruled lines of monospaced text: one element a row, which
    lays out ten times faster than a table cell per figure)."""
    t = fit(text, cols)
    return t + " " * (cols - width(t))


def rcol(text: object, cols: int) -> str:
    t = fit(text, cols)
    return " " * (cols - width(t)) + t


_env.filters.update(lcol=lcol, rcol=rcol)


@lru_cache(maxsize=1)
def missing_parts() -> tuple[str, ...]:
    """What the PDFs need from the system and is not installed (empty when all is there)."""
    missing = []
    if not _has_cjk_font():
        missing.append("fonts-noto-cjk（中文字体）")
    if ctypes.util.find_library("harfbuzz-subset") is None:
        missing.append("libharfbuzz-subset0（字体子集）")
    return tuple(missing)


def install_hint() -> str:
    parts = missing_parts()
    return f"缺少生成 PDF 公示所需的系统软件：{'、'.join(parts)}。请以 root 运行：{INSTALL}" if parts else ""


def _has_cjk_font() -> bool:
    if any(Path("/usr/share/fonts").glob("**/NotoSansCJK*")) or any(Path("/usr/share/fonts").glob("**/NotoSerifCJK*")):
        return True
    if shutil.which("fc-list") is None:
        return False
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Noto Sans CJK" in out or "Noto Serif CJK" in out


class PdfUnavailable(RuntimeError):
    """The system lacks what WeasyPrint needs; the message says how to install it."""


def html(meta: dict[str, Any], content: dict[str, Any], *, for_pdf: bool = False) -> str:
    """The notice as a page: `meta` (kind, code, title, period, generated, audit head) and its content (which holds
    the verification address its QR leads to)."""
    generated = meta.get("generated_at")
    when = to_local(generated) if isinstance(generated, datetime) else None
    url = str(content.get("verify_url", ""))
    return _env.get_template(f"{meta['kind']}.html").render(
        meta=meta, c=content, verify_url=url, qr=qr_svg(url, size_mm=22), for_pdf=for_pdf,
        generated=when.strftime("%Y年%-m月%-d日 %H:%M") if when else "", month_label=month_label)


def fetch_allowed(url: str) -> bool:
    """Whether WeasyPrint may load this URL: a data: URI, or a file:// URL inside FETCH_ROOTS (after resolving
    "..", symlinks and %-escapes). Nothing else: no http(s), no ftp, no file:///etc/passwd."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        return True
    if scheme != "file":
        return False
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return False
    try:
        path = Path(unquote(parts.path)).resolve()
    except (OSError, ValueError):
        return False
    return any(path.is_relative_to(root) for root in FETCH_ROOTS)


@lru_cache(maxsize=1)
def url_fetcher() -> Any:
    """A WeasyPrint fetcher that serves only what fetch_allowed admits; any other URL fails (WeasyPrint then
    leaves that image or stylesheet out and goes on)."""
    from weasyprint.urls import URLFetcher

    class LocalOnly(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if not fetch_allowed(url):
                raise ValueError(f"refused to fetch {url[:200]!r}: not one of the app's own files")
            return super().fetch(url, headers)

    return LocalOnly(allowed_protocols=("file", "data"), allow_redirects=False)


def pdf(page: str) -> bytes:
    """The page as PDF bytes (A4). Deterministic for the same page: the document's dates come from the page."""
    if missing_parts():
        raise PdfUnavailable(install_hint())
    import weasyprint  # heavy: imported when the first PDF is made

    return weasyprint.HTML(string=page, base_url=str(TEMPLATES), url_fetcher=url_fetcher()).write_pdf(uncompressed_pdf=False)


def documents_pdf(pages: list[str]) -> bytes:
    """Several notices in one PDF, each laid out on its own (its page numbers are its own: 第1页/共3页)."""
    if missing_parts():
        raise PdfUnavailable(install_hint())
    import weasyprint

    docs = [weasyprint.HTML(string=page, base_url=str(TEMPLATES), url_fetcher=url_fetcher()).render() for page in pages]
    if not docs:
        return b""
    return docs[0].copy([pg for d in docs for pg in d.pages]).write_pdf()


def merge_pdfs(files: list[bytes]) -> bytes:
    """PDF files one after the other in one file (a township's batch: memory stays at about the files' size,
    instead of every village's laid-out pages at once)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for data in files:
        writer.append(io.BytesIO(data))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_count(pdf: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(pdf)).pages)


def month_label(period: int) -> str:
    """202610 -> 2026年10月; 202600 -> 2026年."""
    return f"{period // 100}年" if period % 100 == 0 else f"{period // 100}年{period % 100}月"
