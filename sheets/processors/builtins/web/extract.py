"""What `web` reads out of an HTML page: title, description, main text, language,
e-mails, phones, social links and the user's `select` fields (selectolax/lexbor).

E-mails and phones go through the `clean` processor's normalisation (lower-case
addresses; E.164 numbers), so they match what `clean` makes of a sheet's columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from sheets.processors.builtins import clean

NOT_TEXT_TAGS = ["script", "style", "noscript", "template", "nav", "svg", "iframe"]
BOILERPLATE_TAGS = ["header", "footer", "aside", "form"]  # stripped when there is no <main>
MAX_FOUND = 20  # e-mails, phones: at most this many per page (a directory page has hundreds)
LIST_SEPARATOR = ", "
# Something that may be a phone number: 7 to 20 digits with the usual separators.
PHONE_LIKE = re.compile(r"(?<![\w+])\+?(?:\(\d{1,5}\)[\s./-]?)?\d[\d\s./()-]{5,22}\d(?![\w])")
MAX_PHONE_TEXT = 200_000  # characters of the page's text searched for phones
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")
# Network name -> the hosts of its profile links (subdomains count: uk.linkedin.com).
SOCIAL_HOSTS = {
    "linkedin": ("linkedin.com",),
    "x": ("x.com", "twitter.com"),
    "facebook": ("facebook.com", "fb.com"),
    "instagram": ("instagram.com",),
    "youtube": ("youtube.com", "youtu.be"),
    "tiktok": ("tiktok.com",),
    "github": ("github.com",),
    "pinterest": ("pinterest.com",),
    "threads": ("threads.net",),
    "bluesky": ("bsky.app",),
}
# Share buttons and the like point at a network but are not the site's profile.
NOT_PROFILE = re.compile(r"/(share|sharer|intent|dialog|plugins|embed)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Select:
    """One `select` line: the column `name` gets the first match of `css` (its text,
    or its `attr` attribute)."""

    name: str
    css: str
    attr: str = ""


def collapse(text: str | None) -> str:
    return " ".join((text or "").split())


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when there is one."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


def page_facts(
    html: str | bytes,
    *,
    max_text_chars: int,
    phone_region: str,
    selects: tuple[Select, ...] = (),
    header_lang: str = "",
) -> dict[str, Any]:
    """Everything `web` reads from one HTML document, by output column."""
    tree = LexborHTMLParser(html, encoding=isinstance(html, bytes))
    title = tree.css_first("title")
    description = tree.css_first('meta[name="description" i]') or tree.css_first(
        'meta[property="og:description" i]'
    )
    hrefs = [node.attributes.get("href") or "" for node in tree.css("a[href]")]
    facts: dict[str, Any] = {
        "title": collapse(title.text()) if title else "",
        "description": collapse(description.attributes.get("content")) if description else "",
        "lang": page_lang(tree, header_lang),
        "social": LIST_SEPARATOR.join(social_links(hrefs)),
    }
    for select in selects:  # before stripping: a selector may well point into <nav>
        facts[select.name] = truncate(selected(tree, select), max_text_chars)
    tree.strip_tags(NOT_TEXT_TAGS)
    main = tree.css_first("main") or tree.css_first("article") or tree.css_first('[role="main"]')
    if main is None:
        tree.strip_tags(BOILERPLATE_TAGS)
        main = tree.body
    text = collapse(main.text(separator=" ")) if main else ""
    whole = collapse(tree.body.text(separator=" ")) if tree.body else text
    facts["text_length"] = len(text)
    facts["text"] = truncate(text, max_text_chars)
    facts["emails"] = LIST_SEPARATOR.join(emails(hrefs, whole))
    facts["phones"] = LIST_SEPARATOR.join(phones(hrefs, whole, phone_region))
    return facts


def selected(tree: LexborHTMLParser, select: Select) -> str:
    node: LexborNode | None = tree.css_first(select.css)
    if node is None:
        return ""
    if select.attr:
        return collapse(node.attributes.get(select.attr))
    return collapse(node.text(separator=" "))


def page_lang(tree: LexborHTMLParser, header_lang: str) -> str:
    """The language the page declares: <html lang>, else the Content-Language meta or
    header (its first tag); "" when it declares none."""
    html = tree.css_first("html")
    meta = tree.css_first('meta[http-equiv="content-language" i]')
    for value in (
        html.attributes.get("lang") if html else None,
        meta.attributes.get("content") if meta else None,
        header_lang,
    ):
        tag = (value or "").split(",")[0].strip()
        if tag:
            return tag
    return ""


def _first_unique(values: Any, limit: int = MAX_FOUND) -> list[str]:
    found: list[str] = []
    for value in values:
        if value and value not in found:
            found.append(value)
            if len(found) == limit:
                break
    return found


def emails(hrefs: list[str], text: str) -> list[str]:
    """Valid addresses in mailto: links, then in the text, normalised like `clean`."""
    candidates = [
        unquote(href[len("mailto:") :].split("?")[0])
        for href in hrefs
        if href.lower().startswith("mailto:")
    ]
    candidates += EMAIL.findall(text)

    def normalised() -> Any:
        for candidate in candidates:
            address, problem = clean.clean_email(candidate.strip(), {})
            if not problem:
                yield address

    return _first_unique(normalised())


def phones(hrefs: list[str], text: str, region: str) -> list[str]:
    """Valid numbers in tel: links, then in the text, as E.164 (like `clean`)."""
    options = {"phone_region": region}
    candidates = [unquote(href[len("tel:") :]) for href in hrefs if href.lower().startswith("tel:")]

    def normalised() -> Any:
        for candidate in candidates:
            number, problem = clean.clean_phone(candidate.strip(), options)
            if not problem:
                yield number
        # phonenumbers' own matcher costs ~25 ms on a page full of digits: a regex finds
        # the candidates, and only they are parsed and checked.
        for match in PHONE_LIKE.finditer(text[:MAX_PHONE_TEXT]):
            number, problem = clean.clean_phone(match.group(), options)
            if not problem:
                yield number

    return _first_unique(normalised())


def social_links(hrefs: list[str]) -> list[str]:
    """The first profile link to each network the page links to, in page order."""
    found: dict[str, str] = {}
    for href in hrefs:
        try:
            parts = urlsplit(href.strip())
        except ValueError:
            continue
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or NOT_PROFILE.search(parts.path):
            continue
        if parts.path.strip("/") == "":
            continue  # the network's home page, not a profile
        for network, hosts in SOCIAL_HOSTS.items():
            if network not in found and any(host == h or host.endswith("." + h) for h in hosts):
                found[network] = href.strip()
    return list(found.values())
