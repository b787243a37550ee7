"""Exclusive use of one model's KV cache, from a generation's first token to its last.

A `Llama` holds one sequence in its KV cache. A generation prefills its prompt and then appends one
token per step; anything else that touches the cache in between (another generation, `eval`,
`reset`, `truncate`) would silently corrupt both. Until the engine runs several sequences side by
side, every operation that uses the cache therefore *owns* the model while it runs:

- A call from another thread waits until the owner is done (`ModelOwnership.timeout` seconds at
  most, then `ModelBusyError`; None waits for as long as it takes).
- A call from the thread that is itself consuming an unfinished streaming generation raises
  `ModelBusyError` at once: waiting would deadlock, since only that thread can finish the owner.
  ("That thread" is the one that last advanced the generation.)
- Calls the owner makes while it runs (a generation's own prefill, eval, truncate) go through:
  ownership is reentrant for its running owner.

A streaming generation (`owned_iteration`) takes ownership at its first `next()`, not when it is
created: a generator that is never started holds nothing. It keeps ownership while suspended
between its items, and gives it back when it is exhausted, fails, is closed, or is garbage-collected
(CPython closes a generator as soon as the last reference to it goes). A generator that is kept
referenced but no longer advanced blocks other threads for as long as it lives: close it, or set a
timeout so that they get a `ModelBusyError` instead of waiting.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

from edgellama.errors import ModelBusyError

Item = TypeVar("Item")


class ModelOwnership:
    """Who may use a model's KV cache now: nobody, or one owner (an operation), which is either
    running in a thread or suspended (a streaming generation between two items).

    timeout: seconds a call from another thread waits for the owner before ModelBusyError;
    None (the default) waits for as long as it takes."""

    def __init__(self, timeout: Optional[float] = None):
        self.timeout = timeout
        # Reentrant: a streaming generation left in a reference cycle is closed by the garbage
        # collector, which may run inside one of our critical sections in the same thread; its
        # release() must not deadlock there.
        self._changed = threading.Condition(threading.RLock())
        self._owner: Optional[object] = None        # a token per owning operation; None when free
        self._owner_thread: Optional[int] = None    # the thread running the owner, or that ran it last
        self._owner_running = False
        self._owner_purpose = ""                    # what the owner is, for error messages

    # --- one operation ------------------------------------------------------------------------
    def acquire(self, purpose: str) -> Optional[object]:
        """Makes the caller the owner, waiting for the current owner if it runs in another thread.
        Returns the token to release(); None when the caller is the running owner itself (a nested
        call: there is nothing to release). ModelBusyError on a would-be deadlock or a timeout."""
        me = threading.get_ident()
        with self._changed:
            if self._owner is not None and self._owner_running and self._owner_thread == me:
                return None
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while self._owner is not None:
                if self._owner_thread == me:
                    raise ModelBusyError(
                        f"{purpose} cannot start: this Llama is in use by an unfinished {self._owner_purpose} "
                        "that this thread is consuming (waiting would deadlock); exhaust or close() it "
                        "first, or use a second Llama object")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ModelBusyError(
                        f"{purpose} waited {self.timeout} s (busy_timeout) for a {self._owner_purpose} "
                        "in another thread to finish with this Llama")
                self._changed.wait(remaining)
            self._owner, self._owner_thread, self._owner_running = object(), me, True
            self._owner_purpose = purpose
            return self._owner

    def release(self, token: Optional[object]) -> None:
        """Ends the ownership that acquire() returned token for (None: a nested call, no-op)."""
        if token is None:
            return
        with self._changed:
            if self._owner is token:
                self._owner, self._owner_thread, self._owner_running = None, None, False
                self._changed.notify_all()

    @contextmanager
    def hold(self, purpose: str) -> Iterator[None]:
        """Owns the model for the duration of a with-block."""
        token = None
        try:
            token = self.acquire(purpose)
            yield
        finally:
            self.release(token)

    # --- a streaming generation ---------------------------------------------------------------
    def _set_running(self, token: Optional[object], running: bool) -> None:
        if token is None:
            return
        with self._changed:
            if self._owner is token:
                self._owner_running = running
                if running:
                    self._owner_thread = threading.get_ident()

    def owned_iteration(self, start: Callable[[], Iterator[Item]], purpose: str,
                        is_last: Optional[Callable[[Item], bool]] = None) -> Iterator[Item]:
        """A generator over the items of start(), which owns the model from its first next() (when
        start() is called) until it is exhausted, fails, is closed or is collected, or until it
        reaches an item for which is_last(item) is true: that one is yielded with the model already
        free (start()'s iterator must not touch the model after it). Between items it is suspended:
        other threads still wait, and this thread gets ModelBusyError from any other use of the
        model."""
        token = items = None
        try:
            token = self.acquire(purpose)
            items = start()
            for item in items:
                if is_last is not None and is_last(item):
                    self.release(token)
                    token = None
                self._set_running(token, False)
                try:
                    yield item
                finally:  # resumed by next(), or by close()/collection in whatever thread does it
                    self._set_running(token, True)
        finally:
            try:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # its own clean-up runs while it still owns the model
            finally:
                self.release(token)
