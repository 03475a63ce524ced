"""The farmer's web app in Vietnamese (default) and English: message catalogues, and numbers, money and dates per
locale (Babel).

Msgids are English; ``locale/vi/LC_MESSAGES/messages.po`` holds the Vietnamese translation of each, and
``locale/en/…`` the (empty: the msgid is the text) English catalogue. Only the ``.po`` files are kept in git: they
are compiled in memory on first use, so a compiled catalogue can never drift from its source.
``tests/web/test_i18n.py`` fails when a string in the code or templates has no Vietnamese translation, or when the
catalogue keeps one nothing uses.

To add a string: write ``_("…")`` in a template or ``tr.gettext("…")`` / ``N_("…")`` in Python, run
``.venv/bin/python -m agrimarket.web.i18n`` (adds the new msgids to both catalogues and drops unused ones), and
fill in its ``msgstr`` in the Vietnamese ``messages.po``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.dates import format_time as babel_format_time
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations
from starlette.requests import Request

LocaleCode = Literal["vi", "en"]
LOCALES: tuple[LocaleCode, ...] = ("vi", "en")
DEFAULT_LOCALE: LocaleCode = "vi"
LANG_COOKIE = "agrimarket_lang"
VIETNAM = timezone(timedelta(hours=7))  # orders are shown in Vietnam time (no daylight saving)
DOMAIN = "messages"
LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
WEB_DIR = Path(__file__).resolve().parent
# What ``extract`` reads: Python under web/ and the Jinja templates (Jinja2 ships Babel's ``jinja2`` extractor).
METHOD_MAP = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
_HEADER_DATE = datetime(2025, 1, 1, tzinfo=UTC)
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown (the gettext convention)."""
    return message


def po_path(locale: LocaleCode) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(locale: LocaleCode) -> Catalog:
    with po_path(locale).open("rb") as fp:
        return read_po(fp, locale=locale, domain=DOMAIN)


@cache
def _translations(locale: LocaleCode) -> Translations:
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(locale))  # fuzzy entries are left out, as msgfmt does
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@dataclass(frozen=True)
class Translator:
    """One request's language: its messages and its number, money and date formats."""

    locale: LocaleCode

    @property
    def _messages(self) -> Translations:
        return _translations(self.locale)

    def gettext(self, message: str, **values: Any) -> str:
        text = self._messages.gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        return self._messages.ngettext(singular, plural, n) % {"num": n, **values}

    def number(self, value: int) -> str:
        return format_decimal(value, locale=self.locale)

    def vnd(self, amount: int) -> str:
        """``120000`` → ``120.000 ₫`` in Vietnamese, ``₫120,000`` in English (no decimals: the đồng has none)."""
        return format_currency(amount, "VND", locale=self.locale)

    def date(self, value: date | None) -> str:
        return babel_format_date(value, "medium", locale=self.locale) if value is not None else ""

    def when(self, value: datetime) -> str:
        """An order's moment in Vietnam time: ``14:05 · 2 thg 12, 2026`` (the hour first: today's orders)."""
        local = value.replace(tzinfo=value.tzinfo or UTC).astimezone(VIETNAM)
        return f"{babel_format_time(local, 'short', locale=self.locale)} · {self.date(local.date())}"

    @property
    def language_name(self) -> str:
        name = Locale.parse(self.locale).get_display_name(self.locale) or self.locale
        return name[:1].upper() + name[1:]


def locale_of(request: Request) -> LocaleCode:
    """The language chosen with the switch (a cookie), else Vietnamese: the app's users read Vietnamese first."""
    return "en" if request.cookies.get(LANG_COOKIE) == "en" else DEFAULT_LOCALE


def translator(request: Request) -> Translator:
    return Translator(locale_of(request))


# -- keeping the catalogues in step with the code -----------------------------------------------------------------


def extract() -> Catalog:
    """Every message the web app uses, from its Python code and templates."""
    # A fixed header date: regenerating the catalogues changes them only where a message changed.
    catalog = Catalog(domain=DOMAIN, project="AgriMarket", version="1", creation_date=_HEADER_DATE, fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        WEB_DIR, METHOD_MAP, keywords=KEYWORDS, comment_tags=("Translators:",), strip_comment_tags=True
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def update_catalogs() -> None:
    """Bring both catalogues in line with the code: new msgids added (untranslated), unused ones dropped."""
    template = extract()
    for locale in LOCALES:
        path = po_path(locale)
        catalog = read_catalog(locale) if path.is_file() else Catalog(locale=locale, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.project, catalog.version, catalog.fuzzy = "AgriMarket", "1", False
        catalog.revision_date = catalog.creation_date = _HEADER_DATE
        catalog.copyright_holder = catalog.msgid_bugs_address = catalog.last_translator = catalog.language_team = ""
        catalog.obsolete.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fp:
            write_po(fp, catalog, width=120, omit_header=False, sort_output=True, include_lineno=False)


if __name__ == "__main__":
    update_catalogs()
