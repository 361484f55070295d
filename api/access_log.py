"""gunicorn's access log with tokens masked, so that a query-string token never reaches a log.

gunicorn writes the raw request line, query string and Referer. Any of them may carry
``token=<secret>`` (percent-encoded names included, since the app decodes them too).
"""

import re
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

MASK = "***"

# One query parameter: its name and, when present, the value after "=".
_PARAM = re.compile(r"(?P<sep>^|[?&;])(?P<name>[^=&;#\s]*)(?P<value>=[^&;#\s]*)?")

# Atoms of gunicorn's log format that hold a URL, a query string or a credential.
_URL_ATOMS = ("r", "q", "f", "{referer}i", "{query_string}e", "{raw_uri}e", "{request_uri}e")
_SECRET_ATOMS = ("{authorization}i", "{http_authorization}e")


def mask_tokens(text):
    """Replace the value of every ``token`` parameter in a URL or query string."""
    if not text or "=" not in text:
        return text

    def replace(match):
        if match.group("value") and unquote_plus(match.group("name")).strip().lower() == "token":
            return f"{match.group('sep')}{match.group('name')}={MASK}"
        return match.group(0)

    return _PARAM.sub(replace, text)


class TokenMaskingLogger(Logger):
    """gunicorn's logger with every place a token could appear masked."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_tokens(atoms[key])
        for key in _SECRET_ATOMS:
            if key in atoms:
                atoms[key] = MASK
        return atoms
