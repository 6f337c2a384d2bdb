"""The reader/writer lock of :class:`embeddings.index.video_index.VideoIndex`.

Searches read, add/remove/upsert/set_search_params write. Two reader protocols share the lock:
the general search path takes a plain mutex, the one-query serving path announces itself
without one (see :class:`_ReadWriteLock`).
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["_GIL", "_Read", "_ReadWriteLock", "_Write"]

# The one-query search path announces itself with list.append/pop instead of a mutex. That is
# sound only when the GIL serialises bytecodes (see _ReadWriteLock); free-threaded builds take
# the mutex path.
_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())


class _ReadWriteLock:
    """Many readers or one (reentrant) writer; waiting writers block new readers.

    Two reader protocols share it. ``acquire_read``/``release_read``: one plain mutex
    acquire/release each way when uncontended. The one-query serving path (with the GIL):
    ``fast.append(None)`` to announce, then read ``fast_closed``; if set, ``fast.pop()`` and
    take the mutex path; otherwise search and ``fast.pop()``. A writer sets ``fast_closed``
    before it waits and, once it holds the lock, waits until ``fast`` is empty. Both sides
    write first and read second (Dekker's order), and the GIL runs list.append/pop and
    attribute reads one at a time in a single order, so either the reader sees the flag or the
    writer sees the announcement: no reader is inside faiss while a writer changes the index.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None
        self._depth = 0
        self._writers_waiting = 0
        self.fast: list = []  # one entry per one-query reader inside faiss
        self.fast_closed = False  # a writer waits or writes: one-query readers take the mutex path

    def acquire_read(self):
        cond = self._cond
        cond.acquire()
        if self._writer is None and not self._writers_waiting:  # uncontended: no ident lookup
            self._readers += 1
            cond.release()
            return
        try:
            if self._writer != threading.get_ident():
                while self._writer is not None or self._writers_waiting:
                    cond.wait()
            self._readers += 1
        finally:
            cond.release()

    def release_read(self):
        cond = self._cond
        cond.acquire()
        self._readers -= 1
        if self._writers_waiting and not self._readers:
            cond.notify_all()
        cond.release()

    def acquire_write(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return
            self._writers_waiting += 1
            self.fast_closed = True
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            except BaseException:
                self._writers_waiting -= 1
                self.fast_closed = self._writer is not None or self._writers_waiting > 0
                raise
            self._writers_waiting -= 1
            self._writer, self._depth = me, 1
        try:
            while self.fast:  # one-query readers that announced before fast_closed was set
                time.sleep(20e-6)
        except BaseException:  # interrupted: do not leave the lock held
            self.release_write()
            raise

    def release_write(self):
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._writer = None
                self.fast_closed = self._writers_waiting > 0
                self._cond.notify_all()


class _Read:
    def __init__(self, lock):
        self.lock = lock

    def __enter__(self):
        self.lock.acquire_read()

    def __exit__(self, *exc):
        self.lock.release_read()


class _Write(_Read):
    def __enter__(self):
        self.lock.acquire_write()

    def __exit__(self, *exc):
        self.lock.release_write()
