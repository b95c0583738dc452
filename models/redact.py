"""Secrets out of sight: the one place that masks URLs, labels alert channels and scrubs logs.

Every secret the project handles (``IFD_CLICKHOUSE_URL``'s password, ``DATABENTO_API_KEY``,
``IFD_ALERT_URLS``) is shown through these functions only:

- :func:`mask_url` for a database URL (password → ``***``);
- :func:`channel_labels` for Apprise URLs (``scheme://***``, numbered when repeated);
- :func:`url_secret_fragments` for the parts of an Apprise URL that may be credentials;
- :class:`SecretFilter`, a :class:`logging.Filter` that third-party loggers (databento,
  apprise, urllib3) get while a component holding a secret is open.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_TOKEN_SPLIT_RE = re.compile(r"[/?&=:@,;#]+")
MIN_PATH_TOKEN = 6
"""Path/query parts of an Apprise URL at least this long are treated as secrets."""


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``; safe for any input.

    Handles ``scheme://user:pass@host``, ``user:pass@host`` (no scheme), a password holding
    ``@`` or ``/`` (the last ``@`` ends the credentials), ``user:pass`` with no host (what follows
    the ``:`` is masked unless it is a port number) and a query string (``?***``: it may carry
    a password parameter).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        creds, _, after = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        rest = f"{user}:{MASK}@{after}" if ":" in creds else f"{user}@{after}"
    else:
        authority, slash, path = rest.partition("/")
        host, colon, port = authority.rpartition(":")
        if colon and not port.isdigit() and not host.endswith("]"):
            rest = f"{host}:{MASK}{slash}{path}"
    base, question, _query = rest.partition("?")
    return f"{scheme}{sep}{base}{'?' + MASK if question else ''}"


def _scheme_label(url: str) -> str:
    """``scheme://***`` for a URL; ``invalid://***`` when it has no plausible scheme."""
    scheme, sep, _ = url.partition("://")
    if not sep or not _SCHEME_RE.match(scheme):
        scheme = "invalid"
    return f"{scheme.lower()}://{MASK}"


def channel_labels(urls: Iterable[str]) -> list[str]:
    """Redacted, unique channel labels in URL order (``#n`` suffix for repeated schemes)."""
    seen: dict[str, int] = {}
    labels = []
    for url in urls:
        base = _scheme_label(url)
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def url_secret_fragments(url: str) -> set[str]:
    """Parts of an Apprise URL that may be credentials: userinfo, long path/query tokens.

    The password is always treated as secret; the user, path and query parts
    and a dot-less host (Apprise puts tokens there: ``slack://TokenA/...``)
    when at least :data:`MIN_PATH_TOKEN` characters. DNS names, IP
    addresses and ports stay visible.
    """
    fragments: set[str] = set()
    _, sep, rest = url.partition("://")
    if not sep:
        return {url} if url else set()
    netloc, _, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        if len(password) >= 3:
            fragments.add(password)
        if len(user) >= MIN_PATH_TOKEN:
            fragments.add(user)
    else:
        host = netloc
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    tokens = _TOKEN_SPLIT_RE.split(tail) + (_TOKEN_SPLIT_RE.split(hostname) if "." not in hostname else [])
    fragments.update(t for t in tokens if len(t) >= MIN_PATH_TOKEN)
    fragments.update({unquote(f) for f in fragments})
    return {f for f in fragments if f}


class SecretFilter(logging.Filter):
    """Scrub secrets from the log records of the loggers it is attached to; never drops a record.

    Parameters
    ----------
    secrets : iterable of str
        Replaced by ``***`` wherever they occur in a message. An exception whose text holds
        one is withheld from the record.
    withhold : iterable of str
        Markers of key material (e.g. the last characters of an API key, which databento's
        CRAM response ends with): a message holding one is replaced whole.
    """

    def __init__(self, secrets: Iterable[str] = (), withhold: Iterable[str] = ()) -> None:
        super().__init__()
        # longest first so a token containing another is replaced whole
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._withhold = [m for m in withhold if m]
        self._attached: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place."""
        if not self._secrets and not self._withhold:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the emitter's problem
            return True
        if any(marker in message for marker in self._withhold):
            record.msg, record.args = "[message withheld: contains key material]", ()
            return True
        scrubbed = message
        for secret in self._secrets:
            scrubbed = scrubbed.replace(secret, MASK)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(secret in text for secret in self._secrets):
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg} [exception details withheld: contains a secret]"
        return True

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***`` (for error messages and rows)."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def attach(self, logger_names: Iterable[str]) -> SecretFilter:
        """Add the filter to these loggers (filters do not propagate: name each one); returns self."""
        for name in logger_names:
            logging.getLogger(name).addFilter(self)
            self._attached.append(name)
        return self

    def detach(self) -> None:
        """Remove the filter from every logger :meth:`attach` added it to."""
        for name in self._attached:
            logging.getLogger(name).removeFilter(self)
        self._attached = []
