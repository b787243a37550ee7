"""Many generations on one Llama at once (edgellama.engine): continuous batching over n_parallel
sequence slots, on the real SmolLM2 model.

The reference for every output is the same request run alone on a Llama with one sequence: batching
must not change a token, a log-probability or a finish reason. Bodies that race run in watched
threads with a time limit, so a deadlock fails the test instead of hanging the suite."""

import asyncio
import random
import time

import numpy as np
import pytest

from edgellama import InvalidArgumentError, Llama, ModelBusyError
from edgellama.engine import scheduler as scheduler_module
import test_thread_safety  # its run_watched: bodies in daemon threads under a time limit

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colours are",
           "Water boils at", "In 1492, Columbus", "My favourite food is", "The best way to learn is"]
N_TOKENS = 10
TIME_LIMIT = 300.0


@pytest.fixture(scope="module")
def alone(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2)


@pytest.fixture(scope="module")
def parallel(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2, n_parallel=4)


def run_watched(*bodies, limit=TIME_LIMIT):
    return test_thread_safety.run_watched(*bodies, limit=limit)


def records_of(llm, prompt, **kw):
    kw.setdefault("max_tokens", N_TOKENS)
    kw.setdefault("temperature", 0)
    return [(r.token, r.text, r.logprob, r.finish_reason) for r in llm.stream_tokens(prompt, **kw)]


def assert_all_sequences_free(llm):
    sched = llm._scheduler
    with sched.locked():
        assert not sched._active and not sched._waiting and not sched._engine_busy
        assert all(slot.holder is None for slot in sched.slots)
        for slot in sched.slots:
            assert llm._core.seq_n_past(slot.index) == len(slot.tokens)


def test_threads_get_exactly_what_each_request_gets_alone(alone, parallel):
    settings = [dict(), dict(temperature=0.9, seed=7), dict(temperature=0.7, top_k=5, seed=3, repeat_penalty=1.3),
                dict(stop=["\n"], max_tokens=30)]
    jobs = [(p, settings[i % len(settings)]) for i, p in enumerate(PROMPTS)]
    want = [records_of(alone, p, **kw) for p, kw in jobs]
    got = [None] * len(jobs)

    def body(i):
        return lambda: got.__setitem__(i, records_of(parallel, jobs[i][0], **jobs[i][1]))

    run_watched(*[body(i) for i in range(len(jobs))])
    assert got == want
    assert_all_sequences_free(parallel)


def test_streams_advanced_alternately_from_one_thread_run_side_by_side(alone, parallel):
    want = [records_of(alone, p) for p in PROMPTS[:4]]
    streams = [parallel.stream_tokens(p, max_tokens=N_TOKENS, temperature=0) for p in PROMPTS[:4]]
    got = [[] for _ in streams]
    live = list(range(len(streams)))
    while live:
        for i in list(live):
            record = next(streams[i], None)
            if record is None:
                live.remove(i)
            else:
                got[i].append((record.token, record.text, record.logprob, record.finish_reason))
    assert got == want
    assert_all_sequences_free(parallel)


def test_a_fifth_stream_of_the_same_thread_with_four_held_is_refused_not_deadlocked(parallel):
    held = [parallel.stream_tokens(p, max_tokens=N_TOKENS, temperature=0) for p in PROMPTS[:4]]
    for s in held:
        next(s)
    with pytest.raises(ModelBusyError, match="n_parallel"):
        next(parallel.stream_tokens(PROMPTS[4], max_tokens=2, temperature=0))
    held[0].close()
    assert next(parallel.stream_tokens(PROMPTS[4], max_tokens=2, temperature=0)).token >= 0
    for s in held[1:]:
        s.close()
    assert_all_sequences_free(parallel)


def test_requests_beyond_n_parallel_queue_and_all_complete(alone, smollm2_path):
    llm = Llama(smollm2_path, n_ctx=256, n_threads=2, n_parallel=2)
    want = {p: records_of(alone, p) for p in PROMPTS}
    got = {}
    run_watched(*[lambda p=p: got.__setitem__(p, records_of(llm, p)) for p in PROMPTS])
    assert got == want
    assert_all_sequences_free(llm)


def test_stress_random_lengths_stops_and_cancellations(alone, parallel):
    """6 threads × 6 requests with random prompts, lengths, stops and early closes; every record a
    request yields equals the first records of its run alone."""
    rng = random.Random(1234)
    jobs = []
    for _ in range(36):
        prompt = rng.choice(PROMPTS) + rng.choice(["", " and", " the", " a"])
        kw = dict(max_tokens=rng.randint(1, 14), temperature=rng.choice([0, 0.8]), seed=rng.randint(0, 99),
                  stop=rng.choice([None, ["."], ["\n", "the"]]))
        jobs.append((prompt, kw, rng.choice([None, 0, 1, 3])))  # None: read to the end, else close after k
    want = {}
    for prompt, kw, _ in jobs:
        key = (prompt, tuple(sorted((k, str(v)) for k, v in kw.items())))
        if key not in want:
            want[key] = records_of(alone, prompt, **kw)
    results = []

    def worker(my_jobs):
        def body():
            for prompt, kw, close_after in my_jobs:
                stream = parallel.stream_tokens(prompt, **kw)
                got = []
                for record in stream:
                    got.append((record.token, record.text, record.logprob, record.finish_reason))
                    if close_after is not None and len(got) > close_after:
                        stream.close()
                        break
                key = (prompt, tuple(sorted((k, str(v)) for k, v in kw.items())))
                results.append((key, got, close_after))
        return body

    start = time.perf_counter()
    run_watched(*[worker(jobs[i::6]) for i in range(6)])
    elapsed = time.perf_counter() - start
    assert len(results) == len(jobs)
    for key, got, close_after in results:
        reference = want[key]
        assert got == reference[:len(got)], key
        if close_after is None:
            assert got == reference
    assert_all_sequences_free(parallel)
    print(f"stress: {len(jobs)} requests in 6 threads, {sum(len(g) for _, g, _ in results)} records "
          f"in {elapsed:.1f} s")


def test_a_shared_prefix_is_copied_from_the_sequence_that_holds_it(parallel):
    system = [{"role": "system", "content": "You are a terse assistant who answers in one line. " * 4}]
    first = parallel.stream_tokens(parallel.chat_template.encode(parallel.tokenizer, system + [
        {"role": "user", "content": "Name a fruit."}], add_generation_prompt=True), max_tokens=6, temperature=0)
    next(first)  # holds a sequence with the system prompt cached
    second = parallel.stream_tokens(parallel.chat_template.encode(parallel.tokenizer, system + [
        {"role": "user", "content": "Name a tree."}], add_generation_prompt=True), max_tokens=6, temperature=0)
    record = next(second)
    assert record.stats.reused_tokens >= 40  # the system prompt, computed once
    first.close()
    second.close()
    assert_all_sequences_free(parallel)


def test_a_follow_up_takes_the_sequence_that_holds_its_conversation(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=512, n_threads=2, n_parallel=3)
    chats = [[{"role": "user", "content": q}] for q in ("Name a colour.", "Name a river.", "Name a city.")]
    first_turns = []
    for chat in chats:
        first_turns.append(len(llm.chat_template.encode(llm.tokenizer, chat, add_generation_prompt=True)))
        answer = llm.create_chat_completion(chat, max_tokens=6, temperature=0)
        chat.append(answer["choices"][0]["message"])
    for chat, first_turn in reversed(list(zip(chats, first_turns))):  # each follow-up finds its own turn cached, whatever the order
        chat.append({"role": "user", "content": "Another one?"})
        stream = llm.stream_tokens(llm.chat_template.encode(llm.tokenizer, chat, add_generation_prompt=True),
                                   max_tokens=2, temperature=0)
        stats = next(stream).stats
        stream.close()
        # Its first turn and the answer's tokens (the questions differ within the first turn).
        assert stats.reused_tokens >= first_turn + 3, (stats.reused_tokens, first_turn)


def test_a_long_prompt_is_read_in_chunks_between_the_decode_steps_of_others(smollm2_path, monkeypatch):
    llm = Llama(smollm2_path, n_ctx=1024, n_threads=2, n_parallel=2)
    steps = []
    backend = llm._core

    class Recorder:
        def __getattr__(self, name):
            return getattr(backend, name)

        def forward_batch(self, tokens, seq_ids, positions, want):
            steps.append(np.bincount(seq_ids, minlength=2).tolist())
            return backend.forward_batch(tokens, seq_ids, positions, want)

    llm._scheduler.backend = Recorder()
    streaming = llm.stream_tokens(PROMPTS[1], max_tokens=200, temperature=0)
    first = next(streaming)
    long_prompt = llm.tokenize("word " * 600)
    long_done = []
    run_watched(lambda: long_done.append(llm.create_completion(long_prompt, max_tokens=1, temperature=0)))
    streaming.close()
    mixed = [s for s in steps if s[0] and s[1]]
    assert first.token >= 0 and long_done
    assert len(mixed) >= len(long_prompt) // 64 - 1  # the stream decoded in every chunk's step
    assert all(sum(s) <= scheduler_module.DEFAULT_STEP_TOKENS for s in mixed)


def test_an_abandoned_stream_holds_its_sequence_but_runs_at_most_max_ahead(parallel):
    abandoned = parallel.stream_tokens(PROMPTS[0], max_tokens=100, temperature=0)
    next(abandoned)
    request = [r for r in parallel._scheduler._active][0]
    for p in PROMPTS[1:3]:
        records_of(parallel, p, max_tokens=30)
    assert len(request.records) <= scheduler_module.MAX_AHEAD
    assert request.stats.generated_tokens <= scheduler_module.MAX_AHEAD + 1
    del abandoned  # collected: the sequence is free
    assert_all_sequences_free(parallel)


def test_async_streams_match_their_runs_alone_and_never_block_the_loop(alone, parallel):
    want = [records_of(alone, p) for p in PROMPTS[:6]]

    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        async def consume(prompt):
            out = []
            async for r in parallel.stream_tokens_async(prompt, max_tokens=N_TOKENS, temperature=0):
                out.append((r.token, r.text, r.logprob, r.finish_reason))
            return out

        tick_task = asyncio.create_task(ticker())
        start = time.perf_counter()
        got = await asyncio.gather(*[consume(p) for p in PROMPTS[:6]])
        elapsed = time.perf_counter() - start
        # An early close frees the sequence.
        stream = parallel.stream_tokens_async(PROMPTS[0], max_tokens=50, temperature=0)
        await stream.__anext__()
        await stream.aclose()
        stop.set()
        await tick_task
        return got, ticks, elapsed

    got, ticks, elapsed = asyncio.run(asyncio.wait_for(main(), TIME_LIMIT))
    assert got == want
    assert ticks >= elapsed / 0.005 / 4  # the loop kept running while the steps ran
    assert_all_sequences_free(parallel)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2", 257])
def test_n_parallel_must_be_an_integer_in_range(smollm2_path, value):
    with pytest.raises(InvalidArgumentError, match="n_parallel"):
        Llama(smollm2_path, n_ctx=64, n_threads=1, n_parallel=value)


def test_the_cuda_engine_refuses_parallel_sequences_before_touching_the_device(smollm2_path):
    with pytest.raises(InvalidArgumentError, match="CUDA engine runs one sequence"):
        Llama(smollm2_path, n_ctx=64, n_threads=1, device="cuda", n_parallel=2)


def test_eval_works_on_sequence_0_beside_running_generations(parallel):
    stream = parallel.stream_tokens(PROMPTS[0], max_tokens=5, temperature=0)
    next(stream)
    holder = [s for s in parallel._scheduler.slots if s.holder is not None][0]
    if holder.index == 0:
        with pytest.raises(ModelBusyError):
            parallel.reset()
    stream.close()
    parallel.reset()
    logits = parallel.eval([1, 2, 3])
    assert logits.shape == (parallel.n_vocab,) and parallel.cached_tokens == [1, 2, 3]
    assert_all_sequences_free(parallel)


def test_async_consumers_cancelled_at_any_moment_leave_the_engine_free(parallel):
    """A task cancelled while its step waits for the step thread must not cancel the step (whose
    end gives the engine back): afterwards the engine is free and sequence 0 usable at once."""
    async def main():
        for i in range(60):
            async def consume():
                async for _ in parallel.stream_tokens_async(PROMPTS[i % 8], max_tokens=30, temperature=0):
                    pass

            tasks = [asyncio.create_task(consume()) for _ in range(3)]
            await asyncio.sleep((i % 6) * 0.002)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), TIME_LIMIT))
    deadline = time.monotonic() + 10
    while parallel._scheduler._engine_busy and time.monotonic() < deadline:  # a step may still be ending
        time.sleep(0.01)
    parallel.busy_timeout = 5.0
    try:
        parallel.reset()  # ModelBusyError if the engine were left busy
    finally:
        parallel.busy_timeout = None
    assert_all_sequences_free(parallel)
