"""Stencils: a page rendered once with named holes, filled in on every view.

Most of the ``/stats`` page is the same for every view within an hour: only the totals and
the current hour's and day's bars change with each hit. Rendering all of it through Jinja
on every view cost several times what the service spends answering an API request, so the
page is rendered once with a hole where each changing part goes, and each view joins the
fixed pieces with its own parts.

A hole is a marker holding a NUL character, which no escaped text and none of the page's
own text contains; building a stencil checks that each hole appears exactly once.
"""

import re

from markupsafe import Markup

HOLE = re.compile("\x00([a-z0-9-]+)\x00")


def hole(name):
    """The marker for a hole, as markup, so that Jinja writes it as it is."""
    return Markup(f"\x00{name}\x00")  # noqa: S704 - a fixed marker around a safe name


class Stencil:
    """A rendered page cut at its holes."""

    def __init__(self, page, names):
        parts = HOLE.split(page)
        self.fixed, self.names = parts[0::2], parts[1::2]
        if sorted(self.names) != sorted(names):
            raise ValueError(f"the page has holes {self.names}, expected {sorted(names)}")

    def fill(self, parts):
        """The page with each hole's part, which must already be safe markup or plain text
        of digits and commas."""
        page = [self.fixed[0]]
        for name, fixed in zip(self.names, self.fixed[1:], strict=True):
            page.append(parts[name])
            page.append(fixed)
        return "".join(page)
