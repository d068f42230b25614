"""UI translations: Chinese message ids (the product's language), catalogs in app/locale/<lang>/LC_MESSAGES/*.po.

The .po files are compiled in memory at start-up, so no binary .mo file is kept in the repository.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
SUPPORTED = ("zh_CN", "en")
DEFAULT = "zh_CN"


@lru_cache(maxsize=8)
def translations(locale: str) -> NullTranslations:
    po = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def pick_locale(explicit: str | None, accept_language: str | None, default: str = DEFAULT) -> str:
    if explicit in SUPPORTED:
        return explicit
    return default
