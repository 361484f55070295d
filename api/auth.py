"""The token check: the Flask-HTTPAuth object and its callbacks, and what a token may do.

A token may come as ``Authorization: Bearer <token>`` or as ``?token=<token>``. Only its
SHA-256 hash is ever stored, so a token is verified by hashing it and looking the hash up
by index, which takes the same time whatever the secret is; each process keeps the tokens it
has looked up until any token changes (``api/storage/token_cache.py``), so a check costs no
round trip. A token works while it is not revoked and not expired; after a roll, its previous
secret works until its grace ends. It may be limited to some of the :data:`SCOPES`.
"""

from functools import wraps

from flask import abort, current_app, request
from flask_httpauth import HTTPTokenAuth
from werkzeug.datastructures import Authorization
from werkzeug.exceptions import HTTPException

from . import errors, metrics, policy, storage, token_hashing
from .speedups import httpauth

# What a token may be limited to, and what each lets it read; a token without scopes has all.
SCOPES = {
    "errors": "the error count (/api?data=errors, /api/errors)",
    "stats": "the error series on /api/stats and /stats",
    "metrics": "the metrics endpoint, /metrics",
}

# What a refused token is told: a revoked token and an unknown one share one message, so that
# the answer says nothing of which names exist; an expired one is told so, so that its holder
# knows to ask for a new one.
EXPIRED = "Token expired"


def lacks_scope(scope):
    """The 403 message for a token outside its scopes."""
    return f"This token lacks the scope {scope}"


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
    """The single check: the token a secret is of, if it works now; None otherwise.

    The answer is kept in the request's facts, so that the rate limiter and the counter, which
    ask before the view runs, and the view itself share one hash and one lookup.
    """
    facts = policy.facts()
    checked = facts.checked
    if checked is not None and checked[0] == token:
        return checked[1]
    found = storage.find_token(token_hashing.hash_token(token))
    why = refusal(found, storage.clock.utcnow())
    metrics.token_checked(why or "valid")
    if why is not None:
        current_app.logger.warning(
            "rejected token %s from %s: %s",
            token_hashing.loggable(token, current_app.config["TOKEN_PREFIX"]),
            request.remote_addr,
            why,
        )
        found = None
    facts.checked = (token, found)
    facts.refused_because = why
    return found


def refusal(token, now):
    """Why a token does not work now (unknown, revoked, expired, a rolled secret past its
    grace), or None when it does."""
    if token is None:
        return "unknown"
    if token.revoked:
        return "revoked"
    if token.previous and (token.works_until is None or now >= token.works_until):
        return "rolled"
    if token.expires_at is not None and now >= token.expires_at:
        return "expired"
    return None


def require_scope(scope):
    """A request with a valid token reads something in ``scope``: 403 when it may not."""
    token = auth.current_user()
    if token is not None and token.scopes is not None and scope not in token.scopes:
        metrics.token_checked("lacks-scope")
        abort(403, description=lacks_scope(scope))


def sent_token():
    """The valid token this request carries, once checked; None otherwise."""
    checked = policy.facts().checked
    return None if checked is None else checked[1]


def check_sent_token():
    """Before the limits and the hit: check the token a request sends to a route that reads
    one, so that its budget, its usage and the view all share the one check. A malformed one
    is left for the view to answer 400."""
    if request.method != "OPTIONS" and credentials_presented() and policy.current().reads_token:
        token = presented_token()
        if token:
            verify_token(token)


def presented_token():
    """The token this request carries, or None when it carries none or is malformed."""
    try:
        credentials = auth.get_auth()
    except HTTPException:
        # The view answers the malformed request with its 400; here it simply has no token.
        return None
    return credentials.token if credentials is not None else None


def token_rejected():
    """Whether this request presented a token that does not work now."""
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
    """Answer in the API's error shape instead of Flask-HTTPAuth's text/html default; an
    expired token is told so."""
    expired = policy.facts().refused_because == "expired"
    return errors.error_response(status, EXPIRED if expired else None)


def init_app(app):
    """The token check runs first among the before-request hooks (api/__init__.py)."""
    app.before_request(check_sent_token)
