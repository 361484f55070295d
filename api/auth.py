"""The token check: the Flask-HTTPAuth object and its callbacks.

A token may come as ``Authorization: Bearer <token>`` or as ``?token=<token>``. Only its
SHA-256 hash is ever stored, so a token is verified by hashing it and looking the hash up
by index, which takes the same time whatever the secret is.
"""

from functools import wraps

from flask import abort, current_app, request
from flask_httpauth import HTTPTokenAuth
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException

from . import errors, policy, storage, token_hashing
from .speedups import httpauth

# What a request that sends its token the wrong way is told; the spec lists these too.
SENT_TWO_WAYS = "Send the token in the Authorization header or in the token parameter, not both"
MALFORMED_HEADER = "Malformed Authorization header; expected 'Authorization: Bearer <token>'"
QUERY_STRING_DISABLED = (
    "Tokens in the query string are disabled on this server; send 'Authorization: Bearer <token>'"
)


class HeaderOrQueryTokenAuth(HTTPTokenAuth):
    """Bearer tokens from the header or, for the tutorial's clients, from the query string."""

    def get_auth(self):
        """Read the token from exactly one place, and reject requests that are ambiguous.

        Flask-HTTPAuth 4.8 only looks at the header and skips ``verify_token`` when there is
        none, so the query parameter has to be read here.
        """
        header = request.headers.get("Authorization")
        query = request.args.get("token")
        if header is not None and query is not None:
            abort(400, description=SENT_TWO_WAYS)
        if header is not None:
            parts = header.split()
            if len(parts) != 2 or parts[0].lower() != self.scheme.lower():
                abort(400, description=MALFORMED_HEADER)
            return Authorization(self.scheme, token=parts[1])
        if query is not None:
            if not current_app.config["ALLOW_QUERY_TOKEN"]:
                abort(400, description=QUERY_STRING_DISABLED)
            # An empty ?token= is no token at all, not a wrong one.
            return Authorization(self.scheme, token=query) if query else None
        return None


auth = HeaderOrQueryTokenAuth(scheme="Bearer", realm="api")


@auth.verify_token
def verify_token(token):
    """The single check: a token is valid when the hash of it names a live token.

    The answer is kept in the request's facts, so that the rate limiter, which asks before
    the view runs, and the view itself share one hash and one lookup.
    """
    facts = policy.facts()
    checked = facts.checked
    if checked is not None and checked[0] == token:
        return checked[1]
    name = storage.find_token(token_hashing.hash_token(token))
    if name is None:
        current_app.logger.warning(
            "rejected token %s from %s",
            token_hashing.loggable(token, current_app.config["TOKEN_PREFIX"]),
            request.remote_addr,
        )
    facts.checked = (token, name)
    return name


def presented_token():
    """The token this request carries, or None when it carries none or is malformed."""
    try:
        credentials = auth.get_auth()
    except HTTPException:
        # The view answers the malformed request with its 400; here it simply has no token.
        return None
    return credentials.token if credentials is not None else None


def token_rejected():
    """Whether this request presented a token that matched no live token."""
    checked = policy.facts().checked
    return checked is not None and checked[1] is None


def credentials_presented():
    """Whether the request carries a token in either place, valid or not; decided once per
    request."""
    facts = policy.facts()
    if facts.credentials is None:
        facts.credentials = _carries_token(request.environ)
    return facts.credentials


def _carries_token(environ):
    # The raw environ first: most requests have neither.
    if "HTTP_AUTHORIZATION" in environ:
        return True
    query = environ.get("QUERY_STRING")
    if not query or ("token" not in query and "%" not in query):
        # Without either, no parameter can decode to the name "token".
        return False
    return "token" in request.args


# Flask-HTTPAuth's check, run only for a request that sends a token (api/speedups/httpauth.py).
with_optional_token = httpauth.only_when_sent(auth, credentials_presented)


def optional_token(view):
    """Decorate a page's view with :func:`with_optional_token`."""

    @wraps(view)
    def decorated(*args, **kwargs):
        return with_optional_token(view, *args, **kwargs)

    # A page that checks a token: the limiter looks it up first, so that wrong ones spend
    # the failed-token budget here too.
    decorated.policy = policy.PAGE_WITH_TOKEN
    return decorated


def refuse():
    """End the request with the 401 a missing or wrong token gets, wherever it is decided."""
    abort(auth.auth_error_callback(401))


@auth.error_handler
def auth_error(status):
    """Answer in the API's error shape instead of Flask-HTTPAuth's text/html default."""
    return errors.error_response(status)
