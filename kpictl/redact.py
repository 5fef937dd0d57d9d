"""Keep passwords out of every output: messages, logs, job rows, argv copies."""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# user:password@host in any URL-looking string; the password runs to the last '@' before the
# host, so an unescaped '@' inside it is masked too.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^/\s]*)(?=@[^@/\s]*(?:[/?\s]|$))",
    re.I,
)
# password=... in a query string or a libpq keyword/value string
_KEYWORD_PASSWORD = re.compile(r"(?P<prefix>\bpassword\s*=\s*)(?P<password>'[^']*'|[^&\s]+)", re.I)


def secrets_of_url(url: str | None) -> list[str]:
    """The password of a URL, raw and percent-decoded, for exact-match redaction."""
    if not url:
        return []
    found = [m.group("password") for m in _URL_PASSWORD.finditer(url)]
    found += [m.group("password").strip("'") for m in _KEYWORD_PASSWORD.finditer(url)]
    values = {value for value in found if value}
    values |= {unquote(value) for value in values}
    return sorted((v for v in values if v), key=len, reverse=True)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Mask URL passwords, password= keywords and any known secret string in `text`."""
    text = _URL_PASSWORD.sub(
        lambda m: m.group("prefix") + MASK if m.group("password") else m.group(0), text
    )
    text = _KEYWORD_PASSWORD.sub(lambda m: m.group("prefix") + MASK, text)
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str | None) -> str:
    """A URL fit for output: password masked, SQLAlchemy's driver suffix dropped."""
    if not url:
        return "embedded"
    return redact(re.sub(r"^postgresql\+psycopg://", "postgresql://", url))


def mask_argv(
    argv: list[str] | tuple[str, ...], secrets: list[str] | tuple[str, ...] = ()
) -> list[str]:
    return [redact(arg, secrets) for arg in argv]
