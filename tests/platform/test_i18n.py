"""UI text: Chinese by default, an English catalog that covers every string the templates mark."""

from __future__ import annotations

import re

from babel.messages.pofile import read_po

from app.web.i18n import LOCALE_DIR
from app.web.templates import NAV, TEMPLATES_DIR
from tests.support.web import login

MARKED = re.compile(r"""_\(\s*(["'])(.+?)\1\s*\)""")


def _catalog_ids(locale: str) -> dict[str, str]:
    with (LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return {str(m.id): str(m.string) for m in read_po(fh) if m.id}


def test_english_catalog_covers_every_marked_string() -> None:
    en = _catalog_ids("en")
    marked = {m.group(2) for p in TEMPLATES_DIR.rglob("*.html") for m in MARKED.finditer(p.read_text())}
    marked |= {label for label, _url, _perm in NAV}
    missing = sorted(s for s in marked if s not in en or (not en[s] and s not in ("号",)))
    assert missing == [], f"add these to app/locale/en/LC_MESSAGES/messages.po: {missing}"


def test_default_is_chinese_and_english_can_be_chosen(client, demo) -> None:
    page = client.get("/login")
    assert 'lang="zh-CN"' in page.text and "登录振风超市" in page.text
    r = client.post("/preferences/display", data={"locale": "en", "back": "/login"}, follow_redirects=True)
    assert 'lang="en"' in r.text and "Log in to Zhenfeng Store" in r.text


def test_signed_in_user_language_is_remembered(client, demo) -> None:
    csrf = login(client, "admin")
    client.post("/account/preferences", data={"csrf_token": csrf, "locale": "en"})
    client.cookies.delete("zf_lang")
    assert "Audit log" in client.get("/").text
