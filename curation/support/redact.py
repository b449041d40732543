"""Secrets never leave in a message or a manifest: credentials in URLs are refused, and URLs
are redacted wherever curation prints or stores them.

A URL may carry a secret in three places: its user info (``https://user:password@host``), its
query (``?token=...``) and, for chat webhooks, its path (``https://hooks.slack.com/services/T/B/X``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from curation.errors import ConfigError

_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://[^\s'\"<>]+")


def redact_url(url: str, *, path: bool = False) -> str:
    """``url`` without its user info and query; with ``path``, without its path too.

    Examples
    --------
    >>> redact_url("https://alice:pw@dvc.example.com/store?token=x")
    'https://***@dvc.example.com/store?***'
    >>> redact_url("https://hooks.slack.com/services/T0/B0/XYZ", path=True)
    'https://hooks.slack.com/***'
    >>> redact_url("/local/folder")
    '/local/folder'
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"***@{host}" if (parts.username or parts.password) else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            "/***" if path and parts.path not in ("", "/") else parts.path,
            "***" if parts.query else "",
            "",
        )
    )


def redact_text(text: str) -> str:
    """Every URL in ``text`` redacted (user info and query), e.g. in a tool's error output."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_tree(value: Any) -> Any:
    """A copy of a JSON-like tree with every string URL redacted (for manifests)."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_text(value)
    return value


def refuse_credentials(value: Any, field: str, source: str | None = None) -> None:
    """A URL with a password in it (``https://user:password@host``) is a :class:`ConfigError`:
    a loop file is committed to git and copied into every round's manifest.

    Examples
    --------
    >>> refuse_credentials("s3://bucket/path", "version.remote")
    >>> refuse_credentials("https://u:p@host/x", "version.remote")
    Traceback (most recent call last):
    ...
    curation.errors.ConfigError: version.remote: a URL with credentials (https://***@host/x) would be committed ...
    """
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.username or parts.password:
            raise ConfigError(
                f"a URL with credentials ({redact_url(value)}) would be committed to git and copied "
                f"into every manifest; give the URL without them and the credentials through DVC's "
                f"local config (`dvc remote modify --local default user/password ...`) or the "
                f"environment (AWS_*, LAKEFS_*, ...)",
                field=field,
                source=source,
            )
