"""Group commit: concurrent counter increments in one process share one transaction.

A thread that finds no transaction in progress leads: it commits every increment queued so
far in one transaction, hands each waiting thread its result, and passes the lead to the
first thread that queued meanwhile. Every caller returns only once the transaction that holds
its increment has committed, so an acknowledged increment is as durable as a lone one, while
a busy process commits a handful of increments per transaction instead of one.

Each caller gets its own number: the counter's total just after its increment, as its
transaction saw it. A batch's transaction reports the total after all of its increments, and
the callers of the batch are numbered backwards from it, in the order they queued. Numbers
are unique within a process; across processes that is up to the database (see
``postgresql_writer.py``).
"""

import os
import threading
import time

from .. import metrics


class _Ticket:
    """One caller's increments, and the lock it sleeps on until its batch has committed."""

    __slots__ = ("amounts", "touched", "reads", "asked", "totals", "error", "lead", "_wake")

    def __init__(self, amounts, touched, reads):
        self.amounts = amounts
        self.touched = touched
        self.reads = reads
        self.asked = time.monotonic()
        self.totals = None
        self.error = None
        # Set instead of a result when the caller is to lead the next batch.
        self.lead = False
        # A plain lock taken at birth: the caller blocks on it, the leader releases it.
        # It is the cheapest way CPython has to park a thread and wake exactly that thread.
        self._wake = threading.Lock()
        self._wake.acquire()

    def sleep(self):
        self._wake.acquire()

    def wake(self):
        self._wake.release()


class GroupCommit:
    """Batches concurrent increments into one call of ``commit`` at a time.

    ``commit(amounts, asked, touched, reads)`` receives ``{name: amount}``, when the batch's
    first caller asked, the ids of the tokens whose last use to write, and the names of
    counters to read without adding to them; it must do all of it in one transaction, then
    return ``{name: total after the commit}`` for each name added or read, or raise and do
    nothing.
    ``asked`` is when the batch's oldest increment was asked for (``time.monotonic()``), so
    that a deadline can count from when its first caller began to wait, however long it
    queued behind an earlier batch.
    """

    def __init__(self, commit):
        self._commit = commit
        self._mutex = threading.Lock()
        self._queue = []
        self._leading = False

    def increment(self, name, amount=1):
        """Add amount to a counter; return the total just after it, once it is committed."""
        return self.increment_many({name: amount})[name]

    def increment_many(self, amounts, touched=(), reads=()):
        """Add ``{name: amount}`` in one transaction; return each total just after it, once
        committed. A request counted as a hit and an error at once costs one write. The
        tokens ``touched`` (their ids) get their last use written in the same transaction,
        and the counters ``reads`` come back too, as that transaction saw them, so that a
        request reporting another counter's total costs no second round trip."""
        ticket = _Ticket(amounts, touched, reads)
        with self._mutex:
            self._queue.append(ticket)
            follow = self._leading
            self._leading = True
        if follow:
            ticket.sleep()
        if ticket.lead or not follow:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket.totals

    def _lead(self, own):
        """Commit everything queued, wake its callers, and hand the lead on or put it down."""
        # Step aside once before taking the batch: threads that are already answering a
        # request then reach their increment and join this transaction instead of the next.
        # sched_yield() releases the GIL and returns at once when no thread is waiting;
        # time.sleep(0) arms a timer, which costs about 90 us even alone.
        os.sched_yield()
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            self._settle(batch)
        finally:
            # Whatever happened above, the lead passes on and every caller wakes: a thread
            # left asleep here would never return, and every later increment would queue
            # behind a leader that is gone.
            with self._mutex:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            if successor is not None:
                successor.lead = True
                successor.wake()
            for ticket in batch:
                if ticket is not own:
                    ticket.wake()

    def _settle(self, batch):
        """Commit a batch and give each of its tickets a total, or the batch's error."""
        amounts, touched, reads = {}, set(), set()
        for ticket in batch:
            for name, amount in ticket.amounts.items():
                amounts[name] = amounts.get(name, 0) + amount
            touched.update(ticket.touched)
            reads.update(ticket.reads)
        reads.difference_update(amounts)
        began = time.monotonic()
        try:
            totals = self._commit(amounts, batch[0].asked, touched, sorted(reads))
            metrics.batch_committed(len(batch), time.monotonic() - began)
            # Read, every caller sees the batch's total; added, each is numbered backwards.
            read = {name: totals[name] for name in reads}
            for ticket in reversed(batch):
                ticket.totals = {}
                for name in ticket.reads:
                    ticket.totals[name] = read.get(name, totals[name])
                for name, amount in ticket.amounts.items():
                    ticket.totals[name] = totals[name]
                    totals[name] -= amount
        except BaseException as error:  # noqa: BLE001 - every caller of the batch must hear of it
            for ticket in batch:
                ticket.error = error
