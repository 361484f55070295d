"""Flask-HTTPAuth: the token check run only for a request that sends a token."""


def _call(view, *args, **kwargs):
    return view(*args, **kwargs)


def only_when_sent(auth, sent):
    """``view(...)`` with ``auth.login_required(optional=True)`` around it when ``sent()``,
    and without it otherwise.

    Flask-HTTPAuth 4.8.1's optional login parses both places a token may be and runs its
    whole callback chain even when neither holds anything, which on the public data is most
    of a request's auth cost; ``auth.current_user()`` is None either way when no token came.
    """
    # Built once: the decorator wraps a function anew each time it is applied.
    checked = auth.login_required(optional=True)(_call)

    def with_optional_token(view, *args, **kwargs):
        if sent():
            return checked(view, *args, **kwargs)
        return view(*args, **kwargs)

    return with_optional_token
