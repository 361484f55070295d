"""gunicorn's logs with tokens masked, so that no secret a client sends reaches a log.

gunicorn's access log writes the raw request line, query string and Referer, and decodes the
user name of a Basic ``Authorization`` header. Any of them may carry a token (percent-encoded
parameter names included, since the app decodes them too). Its error log quotes the request
line or header line of malformed requests verbatim, so it is masked as well.
"""

import logging
import re
from urllib.parse import unquote_plus

from gunicorn.config import AccessLogFormat
from gunicorn.glogging import Logger

from .config import Config

MASK = "***"

# One query parameter: its name and, when present, the value after "=". A name stops at "?",
# so that a URL starting with its path ("/api?token=...") still has its parameters found; a
# value stops at a quote, which in a log line closes the quoted URL.
_PARAM = re.compile(r"(?P<sep>^|[?&;])(?P<name>[^=&;#?\s]*)(?P<value>=[^&;#\s\"']*)?")

# The credentials of an Authorization header quoted in a message.
_CREDENTIALS = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>\s+)[^\s'\",;]+")

# Atoms of gunicorn's log format that hold a URL, a query string or a credential.
_URL_ATOMS = (
    "r",
    "U",
    "q",
    "f",
    "{referer}i",
    "{query_string}e",
    "{raw_uri}e",
    "{request_uri}e",
    "{path_info}e",
    "{http_referer}e",
)
# gunicorn's default access log format, which access() writes without building every atom.
DEFAULT_FORMAT = AccessLogFormat.default

_SECRET_ATOMS = ("u", "{authorization}i", "{http_authorization}e")


def mask_tokens(text):
    """Replace the value of every ``token`` parameter in a URL or query string."""
    if not text or "=" not in text:
        return text

    def replace(match):
        if match.group("value") and unquote_plus(match.group("name")).strip().lower() == "token":
            return f"{match.group('sep')}{match.group('name')}={MASK}"
        return match.group(0)

    return _PARAM.sub(replace, text)


def token_pattern(prefix):
    """Anything shaped like one of this server's tokens, wherever it appears in a line."""
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9_-]{8,}")


def mask_secrets(text, tokens_like):
    """Mask token parameters, Authorization credentials and token-shaped strings in a line."""
    text = mask_tokens(text)
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('space')}{MASK}", text)
    return tokens_like.sub(MASK, text)


class SecretMaskingFilter(logging.Filter):
    """Rewrites each record's message with every secret in it masked."""

    def __init__(self, prefix):
        super().__init__()
        self.tokens_like = token_pattern(prefix)

    def filter(self, record):
        if getattr(record, "masked", False):
            return True
        message = record.getMessage()
        masked = mask_secrets(message, self.tokens_like)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


class TokenMaskingLogger(Logger):
    """gunicorn's logger with every place a token could appear masked."""

    def setup(self, cfg):
        super().setup(cfg)
        prefix = Config().TOKEN_PREFIX
        self.tokens_like = token_pattern(prefix)
        # Whole lines too, whatever access log format a deployment picks.
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, SecretMaskingFilter) for f in log.filters):
                log.addFilter(SecretMaskingFilter(prefix))

    def access(self, resp, req, environ, request_time):
        """gunicorn's default line, built from the nine atoms it uses and masked once.

        The stock path builds a dict of every header and environ key for each request, and
        the masking above then runs over it and over the finished line again: together
        about half of a small request's cost in Python. Any other format takes that path.
        """
        if not self.access_log_enabled:
            return
        if self.cfg.access_log_format != DEFAULT_FORMAT:
            super().access(resp, req, environ, request_time)
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        get = environ.get
        line = (
            f"{get('REMOTE_ADDR', '-')} - {MASK if self._get_user(environ) else '-'} "
            f'{self.now()} "{environ["REQUEST_METHOD"]} {environ["RAW_URI"]} '
            f'{environ["SERVER_PROTOCOL"]}" {status} {"-" if sent is None else sent} '
            f'"{get("HTTP_REFERER", "-")}" "{get("HTTP_USER_AGENT", "-")}"'
        )
        try:
            self.access_log.info("%s", mask_secrets(line, self.tokens_like), extra={"masked": True})
        except Exception:
            self.exception("access log line failed")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_secrets(atoms[key], self.tokens_like)
        for key in _SECRET_ATOMS:
            if atoms.get(key) not in (None, "-"):
                atoms[key] = MASK
        return atoms
