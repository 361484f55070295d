"""The one list of data kinds: what exists, how each is produced, and which need a token.

Both ``/api?data=<kind>`` and ``/api/<kind>`` read it, and so do the OpenAPI spec and the docs.
Adding a kind is adding one entry here.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import counting


@dataclass(frozen=True)
class Kind:
    """A kind of data the API can answer with."""

    name: str
    type: str
    produce: Callable[[], Any]
    summary: str
    #: The scope a token needs to read it (api/auth.py's SCOPES); None: public data.
    scope: str | None = None
    # A sample content for the spec and the docs, for kinds whose real value changes.
    example: Any = None
    #: The counters ``produce`` reports besides hits, read in the write that counts the
    #: request's hit (``policy.Policy.reads``) rather than in a round trip of their own.
    reads: tuple[str, ...] = ()

    @property
    def private(self):
        """Read only with a valid token that has the kind's scope."""
        return self.scope is not None

    def example_content(self):
        """Fixed kinds show their real content; counters show their sample."""
        return self.produce() if self.example is None else self.example


KINDS = {
    kind.name: kind
    for kind in (
        Kind("1", "Data", lambda: "Yay! Request successful!", "A plain success message."),
        Kind(
            "hits",
            "HitCount",
            counting.current_hits,
            "How many requests the service has answered, this one included.",
            example=42,
        ),
        Kind(
            "errors",
            "ErrorCount",
            lambda: counting.current_total("errors"),
            "How many requests were answered with a 4xx or 5xx status.",
            scope="errors",
            example=7,
            reads=("errors",),
        ),
        Kind(
            "pizza",
            "Pizza",
            lambda: "There are 10 pizzas being made in the pizzeria",
            "How many pizzas are being made.",
        ),
        Kind(
            "people",
            "People",
            lambda: "There are 3 people making the pizzas in the pizzeria",
            "How many people are making them.",
        ),
    )
}
