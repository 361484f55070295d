"""What keeps secrets out of every log, and one logged message on one line.

Both logs, the access log (``access_log.py``) and the app's own (``api/logs.py``), pass what
a request carried through these before it is written:

- **No secret.** A ``token`` parameter's value in a URL, the whole value of any parameter that
  holds one once percent-decoded, the credentials of an ``Authorization`` header quoted in a
  message, and anything shaped like one of this server's tokens, read ``***``.
- **One line.** Text the client controls is escaped as nginx's ``escape=default`` does: ``"``
  and ``\\`` get a backslash, control characters and anything outside printable ASCII become
  ``\\xHH``. So no client can end a field early, forge a status, or start a new line.
"""

import logging
import re
from urllib.parse import unquote_plus

MASK = "***"

# One query parameter: its name and, when present, the value after "=". A name stops at "?",
# so that a URL starting with its path ("/api?token=...") still has its parameters found; a
# value stops at a quote, which in a log line closes the quoted URL.
_PARAM = re.compile(r"(?P<sep>^|[?&;])(?P<name>[^=&;#?\s]*)(?P<value>=[^&;#\s\"']*)?")

# The credentials of an Authorization header quoted in a message.
_CREDENTIALS = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>\s+)[^\s'\",;]+")

# What needs escaping in a logged field: anything but printable ASCII, the quote that closes
# the field, and the backslash that escapes.
_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")

# How many layers of percent-encoding a parameter's value is decoded through when looking for
# a token inside it (a URL in ``next=`` holding a URL in its own ``next=``, and so on).
DECODE_LAYERS = 4


def mask_tokens(text, tokens_like=None):
    """Replace the value of every ``token`` parameter in a URL or query string, and the whole
    value of any parameter that, percent-decoded, holds one (``next=%2Fapi%3Ftoken%3D...``)
    or, given ``tokens_like``, anything shaped like a token."""
    if not text or "=" not in text:
        return text

    def replace(match):
        value = match.group("value")
        if not value:
            return match.group(0)
        if unquote_plus(match.group("name")).strip().lower() == "token" or (
            "%" in value and _hides_a_token(value[1:], tokens_like)
        ):
            return f"{match.group('sep')}{match.group('name')}={MASK}"
        return match.group(0)

    return _PARAM.sub(replace, text)


def _hides_a_token(value, tokens_like):
    """Whether a percent-encoded value, decoded layer by layer, holds a token parameter or a
    token-shaped string."""
    for _ in range(DECODE_LAYERS):
        decoded = unquote_plus(value)
        if decoded == value:
            return False
        value = decoded
        if mask_tokens(value) != value or (tokens_like and tokens_like.search(value)):
            return True
    return False


def may_hold_token_parameter(text):
    """A cheap test that lets most lines skip :func:`mask_tokens`: a parameter can only be
    named ``token`` if its name spells it or is percent-encoded."""
    return "=" in text and ("%" in text or "oken" in text.lower())


def token_pattern(prefix):
    """Anything shaped like one of this server's tokens, wherever it appears in a line."""
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9_-]{8,}")


def mask_secrets(text, tokens_like):
    """Mask token parameters, Authorization credentials and token-shaped strings in a line."""
    text = mask_tokens(text, tokens_like)
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('space')}{MASK}", text)
    return tokens_like.sub(MASK, text)


def _escape_one(match):
    char = match.group(0)
    if char in '"\\':
        return "\\" + char
    # WSGI text is bytes read as latin-1, so a character below 256 stands for that byte.
    if ord(char) < 256:
        return f"\\x{ord(char):02X}"
    return "".join(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def escape(text):
    """Request-controlled text made safe for a one-line, quoted log field."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_one, text)


class SafeMessageFilter(logging.Filter):
    """Rewrites each record's message for the app's own log: every secret masked, and the rest
    escaped as the access log's fields are, so that text a request carried into a message (a
    rejected token, a path) can neither start a forged line nor move a terminal's cursor.

    Our own messages are printable ASCII, so escaping touches only what came from a request.
    A traceback the record carries is formatted after this, and stays as Python wrote it.
    """

    def __init__(self, prefix):
        super().__init__()
        self.prefix = prefix
        self.tokens_like = token_pattern(prefix)

    @classmethod
    def guard(cls, logger, prefix):
        """Add the filter for ``prefix`` to a logger, once: every app a process builds logs
        through the same "api" logger, and a filter added per app would run once per app."""
        if not any(isinstance(f, cls) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(cls(prefix))

    def filter(self, record):
        message = record.getMessage()
        safe = mask_secrets(message, self.tokens_like)
        # Every app in a process logs through the one "api" logger and adds its filter to it,
        # so a record may pass several: masking twice changes nothing, escaping twice would
        # double every backslash.
        if not getattr(record, "escaped", False):
            safe = escape(safe)
            record.escaped = True
        if safe != message:
            record.msg, record.args = safe, ()
        return True
