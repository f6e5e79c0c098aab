"""Masking of credentials that travel inside URLs, for everything printed or logged.

Webhook receivers are often given as ``https://hooks.example/x?token=SECRET`` and a Milvus URI may
be ``https://user:pass@host``. :func:`redact_url` masks every query and fragment *value* and the
userinfo (keys, host and path stay readable); :func:`redact_text` does the same for every URL or
request line inside free text (a log message, an exception's text). :class:`RedactingFilter` applies
it to every record a logging handler emits, including tracebacks and third-party lines such as
urllib3's DEBUG ``"POST /x?token=SECRET HTTP/1.1" 200``.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#\"'<>]+@")
# A value after `?`, `&` or `#` + `key=`: a URL's query or fragment parameters, wherever they appear.
_PARAM = re.compile(r"(?P<key>[?&#;][^=&?#\s\"'<>]+=)[^&#\s\"'<>]+")


def redact_text(text: str) -> str:
    """``text`` with URL userinfo and query/fragment parameter values replaced by ``***``."""
    if "=" not in text and "@" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _PARAM.sub(lambda m: f"{m.group('key')}{MASK}", text)


def redact_url(url: str) -> str:
    """``https://u:p@h/x?token=s&a=1`` → ``https://***@h/x?token=***&a=***``."""
    return redact_text(url)


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's message and traceback text with :func:`redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's business
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add one :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
