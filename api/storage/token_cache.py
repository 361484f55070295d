"""The tokens a process has checked, kept so that a token's check costs no database round trip,
and dropped the moment any token changes.

Every change of a token (created, revoked, rolled) bumps ``token_version`` in its own
transaction (``token_store.py``). This process learns the version from statements it runs
anyway: each counter batch reads it in the same statement or transaction as its increments
(``sqlite_writer.py``, ``postgresql_writer.py``), which under load is every few milliseconds,
and each lookup of a token not kept yet reads it with the token. When the version moves, every
kept token is dropped and looked up again.

**The bound.** A kept token is used only while the version was seen within
:data:`FRESH_FOR` (0.5 s); a process that has seen nothing for that long (an idle worker) reads
the version first, one small query. So a token revoked at time T is refused by every worker of
every server from T + 0.5 s on: any statement sent after T reads a version that includes the
revocation (its snapshot is taken after it is sent), and a check at T + 0.5 s relies only on a
version seen from a statement sent after T. The times are the database's clock (``clock.py``),
so the dynos of one database agree on them. Expiry and the end of a rolled secret's grace are
decided on each check, by the same clock, and need no invalidation.
"""

import threading
from datetime import UTC

from . import clock, token_store

# How long a version read stays good for: the bound on how late a process may learn of a
# token's change is this, plus the time its statement took to reach the database.
FRESH_FOR = 0.5
# Hashes kept at the most; unknown ones (guesses) are kept too, so that a flood of guesses
# cannot grow the process. Past this, all are dropped and looked up again.
MOST_KEPT = 4096


class TokenCache:
    """One per app: the tokens it has looked up by hash, with the version they were read at."""

    def __init__(self):
        self._lock = threading.Lock()
        self.version = -1
        # When the newest version was last read (clock.seconds(), at the statement's sending).
        self.seen_at = float("-inf")
        # token hash -> the Token, or None for no token
        self._kept = {}
        # token id -> when this process last wrote its last_used_at (clock.seconds())
        self._touched = {}

    def observe(self, version, at):
        """A statement sent at ``at`` read ``version``: drop everything kept if it moved on."""
        with self._lock:
            if version > self.version:
                self.version = version
                self._kept = {}
            if version == self.version and at > self.seen_at:
                self.seen_at = at

    def find(self, token_hash):
        """The token this hash is a secret of, or None; from what is kept while that is known
        to be current, else from the database."""
        if clock.seconds() - self.seen_at > FRESH_FOR:
            sent = clock.seconds()
            self.observe(token_store.read_version(), sent)
        kept = self._kept
        if token_hash in kept:
            return kept[token_hash]
        sent = clock.seconds()
        found, version = token_store.look_up_token(token_hash)
        self.observe(version, sent)
        with self._lock:
            if version == self.version:
                if len(self._kept) >= MOST_KEPT:
                    self._kept = {}
                self._kept[token_hash] = found
        return found

    def due_for_touch(self, token, every):
        """Whether this process should write the token's last_used_at now: at most once per
        ``every`` seconds per token, and not when the database already holds a recent one."""
        now = clock.seconds()
        with self._lock:
            last = self._touched.get(token.id)
            if last is None and token.last_used_at is not None:
                last = token.last_used_at.replace(tzinfo=UTC).timestamp()
            if last is not None and now - last < every:
                return False
            if len(self._touched) >= MOST_KEPT:
                self._touched = {}
            self._touched[token.id] = now
            return True
