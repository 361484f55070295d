"""What a token looks like and how it is hashed, shared by the CLI that mints them and auth."""

import hashlib
import secrets

# 32 random bytes: 256 bits, well past anything guessable, in 43 URL-safe characters.
TOKEN_BYTES = 32

# How many characters of a presented token may appear in a log line: the prefix and a few
# more, enough to tell tokens apart and nowhere near enough to use one.
LOGGED_CHARS = 4


def new_token(prefix):
    """A fresh secret with a recognisable prefix, so that leaked tokens are easy to scan for."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token):
    """SHA-256 is enough for a 256-bit random secret, and a fixed hash can be looked up by index."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def loggable(token, prefix):
    """The part of a presented token that is safe to log; the app log escapes what it holds."""
    keep = len(prefix) + LOGGED_CHARS if token.startswith(prefix) else LOGGED_CHARS
    return token[:keep] + "..."
