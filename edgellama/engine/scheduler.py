"""Continuous batching: many generations share one model's forward steps.

The model's KV cache holds `n_parallel` sequences, the *slots*. A generation (GenerationRequest)
waits for a free slot, takes the one whose cached tokens are the longest prefix of its prompt
(copying a longer shared prefix from another slot when one has it, so a shared system prompt is
computed once and another conversation's cache is not thrown away), and holds it until its last
record. One *step* is one batched forward call: the pending
token of every decoding sequence, plus prefill chunks of others under a token budget, so that a
long prompt is read while the other streams keep flowing. Requests join at step boundaries and
leave as soon as they finish; a cancelled one (its consumer closed or dropped its iterator) gives
its slot back at once.

There is no scheduler thread. Whichever consumer needs a record and finds the engine idle runs the
next step for everybody, with the GIL released inside the core; the others wait on a condition (or,
for asyncio consumers, an event) and take the records the step left them. An asyncio consumer runs
its steps on one step thread the scheduler starts on first use. A lone generation thus
runs exactly as a plain loop would, in its own thread. A sequence whose consumer has not taken its
last MAX_AHEAD records sits out the steps until it does, so an abandoned iterator holds its slot
but costs no compute.

Direct use of sequence 0 (Llama.eval, reset, truncate) waits for slot 0 and for the engine, like a
generation waits for a slot. A wait that only this thread could end (every slot it needs is held
by a generation this same thread has left suspended) raises ModelBusyError at once; other waits
last `timeout` seconds at most (None: as long as it takes).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

import numpy as np

from edgellama.engine.request import DECODE, PREFILL, GenerationRequest
from edgellama.errors import ContextOverflowError, ModelBusyError
from edgellama.generate import common_prefix_length

# Records a sequence may run ahead of its consumer before it sits out steps.
MAX_AHEAD = 8
# Tokens per step while sequences are decoding: prefill chunks fill what decode tokens leave. 64 is
# the core's own batch (LlamaModel::kMaxBatch): one pass over the weights per step.
DEFAULT_STEP_TOKENS = 64
# Tokens per step while nobody decodes: a prompt is read in chunks this long (the wait a new
# request can see before it joins).
IDLE_STEP_TOKENS = 512


@dataclass
class Slot:
    """One sequence of the KV cache: the tokens it holds (evaluated, in order) and who holds it."""

    index: int
    tokens: List[int] = field(default_factory=list)
    holder: object = None  # a GenerationRequest, a _DirectUse, or None when free
    last_used: int = 0
    # After a context shift only the first `exact` tokens' cache is what evaluating them afresh
    # gives (the later ones were computed with the dropped tokens in view): None when all are.
    exact: Optional[int] = None

    def reusable(self, prompt: List[int]) -> int:
        """How many of prompt's first tokens this slot's cache holds as a fresh evaluation would."""
        shared = common_prefix_length(self.tokens, prompt)
        return shared if self.exact is None else min(shared, self.exact)

    def hold(self, tokens: List[int]) -> None:
        """Its record after its cache was replaced by a fresh evaluation's of tokens (a copied
        prefix, a loaded state, or nothing)."""
        self.tokens, self.exact = list(tokens), None

    def keep_first(self, n: int) -> None:
        """Its record after the cache was cut to the first n tokens."""
        del self.tokens[n:]
        if self.exact is not None and n <= self.exact:
            self.exact = None


@dataclass
class _DirectUse:
    purpose: str
    thread: int


@dataclass
class _Plan:
    """One step: the entries of the batch and, per sequence run, who receives its logits."""

    tokens: List[int] = field(default_factory=list)
    seq_ids: List[int] = field(default_factory=list)
    positions: List[int] = field(default_factory=list)
    want: List[int] = field(default_factory=list)
    runs: List[Tuple[GenerationRequest, Slot, List[int], bool]] = field(default_factory=list)

    def add(self, request: GenerationRequest, slot: Slot, tokens: List[int], wants_logits: bool) -> None:
        start = len(slot.tokens)
        self.tokens += tokens
        self.seq_ids += [slot.index] * len(tokens)
        self.positions += range(start, start + len(tokens))
        self.want += [0] * (len(tokens) - 1) + [1 if wants_logits else 0]
        self.runs.append((request, slot, tokens, wants_logits))


class Scheduler:
    """Owns a backend with the batched-step interface (edgellama.engine.backends) and its slots.

    n_ctx: every sequence's window. step_tokens: the per-step token budget while sequences decode.
    """

    def __init__(self, backend, n_ctx: int, n_parallel: int, step_tokens: int = DEFAULT_STEP_TOKENS):
        self.backend = backend
        self.n_ctx = n_ctx
        self.step_tokens = step_tokens
        self.timeout: Optional[float] = None
        self.slots = [Slot(i) for i in range(n_parallel)]
        # Reentrant: a generator dropped in a reference cycle is closed by the garbage collector,
        # which may run inside one of our critical sections in the same thread.
        self._changed = threading.Condition(threading.RLock())
        self._waiting: List[GenerationRequest] = []  # first come, first served
        self._active: List[GenerationRequest] = []   # holding a slot
        self._async: set = set()                     # requests with a waker
        self._engine_busy = False                    # a step or a direct use holds the backend
        self._uses = 0
        self._executor: Optional[ThreadPoolExecutor] = None

    # --- the consumer's side ----------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        if len(request.prompt) > self.n_ctx:
            raise ContextOverflowError(f"prompt of {len(request.prompt)} tokens exceeds the context window "
                                       f"n_ctx={self.n_ctx}")
        with self._changed:
            request.submitted_at = time.perf_counter()
            self._waiting.append(request)
            if request.waker is not None:
                self._async.add(request)
            self._changed.notify_all()

    def next_record(self, request: GenerationRequest):
        """The request's next record, or None after its last; runs steps while it has to wait for
        one and nobody else is running them. Raises the request's failure, or ModelBusyError for a
        slot it can never get or does not get within `timeout` seconds."""
        me = threading.get_ident()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            with self._changed:
                request.consumer_thread, request.consuming = me, True
                try:
                    outcome = self._take(request)
                    if outcome is not _NOTHING:
                        return outcome
                    if request.slot is None:
                        self._check_slot_wait(request, deadline)
                    step = not self._engine_busy and self._has_work()
                    if step:
                        self._engine_busy = True
                    else:
                        remaining = None if deadline is None or request.slot is not None else \
                            max(0.0, deadline - time.monotonic())
                        self._changed.wait(remaining)
                        continue
                finally:
                    request.consuming = False
            self._run_step()

    async def next_record_async(self, request: GenerationRequest):
        """next_record for an asyncio consumer: the event loop never blocks (steps run on the
        scheduler's step thread; waits are an asyncio.Event)."""
        loop = asyncio.get_running_loop()
        event = request.waker.event
        while True:
            with self._changed:
                outcome = self._take(request)
                if outcome is not _NOTHING:
                    return outcome
                step = not self._engine_busy and self._has_work()
                if step:
                    self._engine_busy = True
                else:
                    event.clear()
            if step:
                # Shielded: a consumer cancelled while the step is queued on the step thread must
                # not cancel the step itself, whose end gives the engine back (_run_step's finally).
                await asyncio.shield(loop.run_in_executor(self._step_executor(), self._run_step))
            else:
                await event.wait()

    def _step_executor(self) -> ThreadPoolExecutor:
        """The one thread async consumers run steps on: its own, so that steps never wait behind
        other work of the loop's default executor (which may itself be waiting for a sequence)."""
        with self._changed:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgellama-step")
            return self._executor

    def cancel(self, request: GenerationRequest) -> None:
        """The consumer is gone: drop the request's records and give its slot back now."""
        with self._changed:
            self._async.discard(request)
            if request in self._waiting:
                self._waiting.remove(request)
            request.records.clear()
            if not request.done:
                request.cancelled = True
                request.finish()
            self._release(request)
            self._changed.notify_all()
        self._wake_async()

    def _take(self, request: GenerationRequest):
        if request.records:
            record = request.records.popleft()
            if len(request.records) == MAX_AHEAD - 1:
                self._changed.notify_all()  # it may take part in steps again
                self._wake_async()
            return record
        if request.error is not None:
            error, request.error = request.error, None
            self._async.discard(request)
            raise error
        if request.done:
            self._async.discard(request)
            return None
        return _NOTHING

    def _check_slot_wait(self, request: GenerationRequest, deadline: Optional[float]) -> None:
        """ModelBusyError when no slot can come free but by this thread, or the wait timed out."""
        me = threading.get_ident()
        if all(self._held_by_suspended(slot, me) for slot in self.slots) and self.slots:
            raise ModelBusyError(
                "a generation cannot start: every sequence slot of this Llama (n_parallel="
                f"{len(self.slots)}) is held by an unfinished generation that this thread is consuming "
                "(waiting would deadlock); exhaust or close() one first, or use a larger n_parallel")
        if deadline is not None and time.monotonic() >= deadline:
            raise ModelBusyError(f"a generation waited {self.timeout} s (busy_timeout) for a free sequence slot "
                                 f"of this Llama (n_parallel={len(self.slots)})")

    @staticmethod
    def _held_by_suspended(slot: Slot, thread: int) -> bool:
        holder = slot.holder
        return (isinstance(holder, GenerationRequest) and holder.waker is None and not holder.consuming
                and holder.consumer_thread == thread)

    def queue_depth(self) -> int:
        """Requests waiting that the free sequence slots cannot take: those that will queue."""
        with self._changed:
            return max(0, len(self._waiting) - sum(slot.holder is None for slot in self.slots))

    def locked(self):
        """The scheduler's lock, for reading its state consistently."""
        return self._changed

    # --- direct use of one sequence -----------------------------------------------------------
    @contextmanager
    def direct(self, index: Optional[int], purpose: str) -> Iterator[Slot]:
        """Holds slot `index` (None: whichever is free, least recently used first) and the backend
        for a with-block (Llama.eval and friends, embeddings)."""
        me = threading.get_ident()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._changed:
            while True:
                slot = self._free_slot() if index is None else self.slots[index]
                if slot is not None and slot.holder is None and not self._engine_busy:
                    break
                needed = self.slots if index is None else [self.slots[index]]
                if all(self._held_by_suspended(s, me) for s in needed):
                    raise ModelBusyError(
                        f"{purpose} cannot start: the sequence it needs is in use by an unfinished generation "
                        "that this thread is consuming (waiting would deadlock); exhaust or close() it first, "
                        "or use a second Llama object")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ModelBusyError(f"{purpose} waited {self.timeout} s (busy_timeout) for a generation "
                                         "in another thread to finish with this Llama")
                self._changed.wait(remaining)
            self._uses += 1
            slot.holder, slot.last_used, self._engine_busy = _DirectUse(purpose, me), self._uses, True
        try:
            self._resync(slot)
            yield slot
        finally:
            with self._changed:
                slot.holder, self._engine_busy = None, False
                self._changed.notify_all()
            self._wake_async()

    def _free_slot(self) -> Optional[Slot]:
        free = [slot for slot in self.slots if slot.holder is None]
        return min(free, key=lambda s: s.last_used) if free else None

    # --- steps --------------------------------------------------------------------------------
    def _has_work(self) -> bool:
        if any(r.to_evaluate and len(r.records) < MAX_AHEAD for r in self._active):
            return True
        return bool(self._waiting) and any(slot.holder is None for slot in self.slots)

    def _run_step(self) -> None:
        """One step, run by the thread that set _engine_busy; gives the engine back after it."""
        try:
            with self._changed:
                plan = self._plan()
            if plan is not None:
                self._evaluate(plan)
        finally:
            with self._changed:
                self._engine_busy = False
                self._changed.notify_all()
            self._wake_async()

    def _plan(self) -> Optional[_Plan]:
        self._admit()
        decoding = [r for r in self._active
                    if r.state == DECODE and r.to_evaluate and len(r.records) < MAX_AHEAD]
        prefilling = [r for r in self._active if r.state == PREFILL and r.to_evaluate]
        if not decoding and not prefilling:
            return None
        plan = _Plan()
        for request in decoding:
            if len(request.slot.tokens) + len(request.to_evaluate) > self.n_ctx:
                self._shift(request.slot, request.keep)
            plan.add(request, request.slot, request.to_evaluate, True)
        budget = self.step_tokens if decoding else max(self.step_tokens, IDLE_STEP_TOKENS)
        room = max(budget - len(decoding), 0 if decoding else 1)
        for request in prefilling:
            if room <= 0:
                break
            chunk = request.to_evaluate[:room]
            plan.add(request, request.slot, chunk, len(chunk) == len(request.to_evaluate))
            room -= len(chunk)
        return plan

    def _evaluate(self, plan: _Plan) -> None:
        device_choice = self._device_greedy(plan)
        try:
            if device_choice:
                choice = self.backend.greedy_choice(np.asarray(plan.tokens, dtype=np.int32))
            else:
                logits = self.backend.forward_batch(
                    np.asarray(plan.tokens, dtype=np.int32), np.asarray(plan.seq_ids, dtype=np.int32),
                    np.asarray(plan.positions, dtype=np.int64), np.asarray(plan.want, dtype=np.uint8))
        except BaseException as exc:
            with self._changed:
                for request, slot, _, _ in plan.runs:
                    self._resync(slot)
                    if not request.done:
                        request.fail(exc)
                        self._release(request)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like stop this thread too
            return
        row = 0
        for request, slot, tokens, wants_logits in plan.runs:
            slot.tokens += tokens
            if request.to_evaluate[:len(tokens)] == tokens:
                del request.to_evaluate[:len(tokens)]
            if not wants_logits:
                continue
            if not request.cancelled:
                try:
                    if device_choice:
                        request.on_choice(*choice, len(slot.tokens))
                    else:
                        request.on_logits(logits[row], len(slot.tokens))
                except Exception as exc:  # noqa: BLE001 - the request's failure, raised to its consumer
                    request.fail(exc)
            row += 1
        with self._changed:
            for request, _, _, _ in plan.runs:
                if request.done:
                    self._release(request)

    def _shift(self, slot: Slot, keep: int) -> None:
        """Context shift of a full sequence (GenerationRequest.keep): drops half of the tokens after
        the first `keep`, as llama.cpp does, and rotates the later keys to their new positions in
        place (LlamaModel::seq_shift), so generation goes on without evaluating anything again."""
        discard = max(1, (len(slot.tokens) - keep) // 2)
        self.backend.seq_shift(slot.index, keep, discard)
        del slot.tokens[keep:keep + discard]
        slot.exact = keep if slot.exact is None else min(slot.exact, keep)

    def _device_greedy(self, plan: _Plan) -> bool:
        """Whether the engine makes this step's choice itself: a backend that offers it, one
        sequence whose request is plain greedy, and logits wanted after its last entry only."""
        if not getattr(self.backend, "greedy_on_device", False) or len(plan.runs) != 1:
            return False
        request, _, _, wants_logits = plan.runs[0]
        return wants_logits and request.plain_greedy and sum(plan.want) == 1

    def _admit(self) -> None:
        """Gives free slots to waiting requests, first come first served."""
        while self._waiting:
            free = [slot for slot in self.slots if slot.holder is None]
            if not free:
                return
            request = self._waiting.pop(0)
            slot, reused = self._prepare_slot(request, free)
            self._uses += 1
            slot.holder, slot.last_used, request.slot = request, self._uses, slot
            request.stats.queue_seconds = time.perf_counter() - request.submitted_at
            request.start(reused)
            self._active.append(request)

    def _prepare_slot(self, request: GenerationRequest, free: List[Slot]) -> Tuple[Slot, int]:
        """The free slot for a request, with its cache cut to the longest prefix of the prompt that
        any slot holds (copied from that slot when it is another one). Returns (slot, reused).

        The slot is the one sharing the longest prefix with the prompt among those whose whole
        cache is such a prefix (a follow-up turn finds its conversation; an empty slot qualifies
        with 0), else the least recently used one. A free slot that shares only part of its cache
        with the prompt (another conversation with the same system prompt) is thus kept, and the
        shared part copied from it instead. At least the last prompt token is evaluated again:
        its logits are what the request needs."""
        for slot in free:
            self._resync(slot)
        prompt = request.prompt
        shared = {slot.index: slot.reusable(prompt) for slot in self.slots}
        whole = [slot for slot in free if shared[slot.index] == len(slot.tokens)]
        if whole:
            slot = max(whole, key=lambda s: (shared[s.index], -s.last_used))
        else:
            slot = min(free, key=lambda s: s.last_used)
        keep = min(shared[slot.index], len(prompt) - 1)
        donor = max(self.slots, key=lambda s: shared[s.index])
        copied = min(shared[donor.index], len(prompt) - 1)
        if copied > keep:
            self.backend.seq_copy_prefix(donor.index, slot.index, copied)
            slot.hold(donor.tokens[:copied])
            return slot, copied
        self.backend.seq_truncate(slot.index, keep)
        slot.keep_first(keep)
        return slot, keep

    def _resync(self, slot: Slot) -> None:
        """Forget a slot's cache if its record of tokens is out of step with the backend (a step cut
        short by an exception between the core's return and our bookkeeping)."""
        if self.backend.seq_n_past(slot.index) != len(slot.tokens):
            self.backend.seq_clear(slot.index)
            slot.hold([])

    def _release(self, request: GenerationRequest) -> None:
        slot, request.slot = request.slot, None
        if slot is not None and slot.holder is request:
            slot.holder = None
        if request in self._active:
            self._active.remove(request)

    def _wake_async(self) -> None:
        with self._changed:
            wakers = [request.waker for request in self._async]
        for waker in wakers:
            waker()


class AsyncWaker:
    """Wakes an asyncio consumer from any thread: sets its event on its own loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.event = asyncio.Event()

    def __call__(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


_NOTHING = object()
