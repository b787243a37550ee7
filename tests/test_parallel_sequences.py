"""The multi-sequence core: one batched forward call over many sequences' tokens.

Batch invariance is the contract: a sequence's logits are the same bits whether it runs alone or
batched with 1, 3 or 15 others, at any prefill chunking (including chunks that cross the core's
internal 64-token batch), at 1 or 2 threads, for every weight type. The reference is the same
sequence run alone through the single-sequence path (which test_reference and test_determinism
hold against the float64 reference and against token-by-token decoding)."""

import numpy as np
import pytest

from edgellama import _core
from edgellama.gguf_loader import load_gguf
from tiny_models import K_QUANT_TYPES, K_SHAPE, WEIGHT_TYPES, write_tiny_llama

N_DECODE = 6  # greedy decode steps after each prompt


@pytest.fixture(scope="module", params=WEIGHT_TYPES)
def tiny(request, tmp_path_factory):
    weight_type = request.param
    shape = K_SHAPE if weight_type in K_QUANT_TYPES else dict(n_embd=96, n_head=6, n_head_kv=2, n_ff=160)
    path = tmp_path_factory.mktemp("par") / f"{weight_type}.gguf"
    return load_gguf(write_tiny_llama(path, weight_type=weight_type, n_layer=2, seed=5, **shape))


def make_core(model, n_seq, n_threads, n_ctx=128):
    return _core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads, n_seq=n_seq)


def prompts_for(n, n_vocab, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_vocab, size=int(rng.integers(1, 40))).tolist() for _ in range(n)]


def run_alone(core, prompt):
    """Logits of every prompt position, then of N_DECODE greedy steps: (tokens, logits rows)."""
    core.reset()
    rows = list(core.forward(np.array(prompt, np.int32), all_logits=True))
    tokens = []
    for _ in range(N_DECODE):
        tokens.append(int(np.argmax(rows[-1])))
        rows.append(core.forward(np.array(tokens[-1:], np.int32)))
    return tokens, np.stack(rows)


def run_batched(core, prompts, max_chunk, seed):
    """The same sequences side by side: each step takes a random prefill chunk (1..max_chunk) of
    every sequence still reading its prompt and the decode token of every other, in a shuffled
    sequence order; every entry asks for logits."""
    rng = np.random.default_rng(seed)
    pending = [list(p) for p in prompts]
    rows = [[] for _ in prompts]
    tokens = [[] for _ in prompts]
    for s in range(len(prompts)):
        core.seq_clear(s)
    while any(pending) or any(len(t) < N_DECODE for t in tokens):
        batch_tokens, seq_ids, positions = [], [], []
        for s in rng.permutation(len(prompts)):
            if pending[s]:
                take = pending[s][:int(rng.integers(1, max_chunk + 1))]
                del pending[s][:len(take)]
            elif len(tokens[s]) < N_DECODE:
                tokens[s].append(int(np.argmax(rows[s][-1])))
                take = tokens[s][-1:]
            else:
                continue
            start = core.seq_n_past(int(s))
            batch_tokens += take
            seq_ids += [int(s)] * len(take)
            positions += range(start, start + len(take))
        logits = core.forward_batch(np.array(batch_tokens, np.int32), np.array(seq_ids, np.int32),
                                    np.array(positions, np.int64), np.ones(len(batch_tokens), np.uint8))
        for row, s in zip(logits, seq_ids):
            rows[s].append(row)
    return tokens, [np.stack(r) for r in rows]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_others", [1, 3, 15])
def test_a_sequence_batched_with_others_gives_the_bits_it_gives_alone(tiny, n_threads, n_others):
    prompts = prompts_for(n_others + 1, tiny.config.n_vocab, seed=n_others)
    alone_core = make_core(tiny, 1, n_threads)
    alone = [run_alone(alone_core, p) for p in prompts]
    batched_core = make_core(tiny, n_others + 1, n_threads)
    for max_chunk in (1, 7, 40):  # token by token; odd chunks; whole prompts (batches beyond 64 entries)
        tokens, rows = run_batched(batched_core, prompts, max_chunk, seed=max_chunk)
        for s, (want_tokens, want_rows) in enumerate(alone):
            assert tokens[s] == want_tokens, (s, max_chunk)
            assert np.array_equal(rows[s], want_rows), (s, max_chunk)


def test_only_the_entries_that_ask_get_logits_rows_in_entry_order(tiny):
    core = make_core(tiny, 3, 2)
    alone = make_core(tiny, 1, 2)
    a, b = [3, 9, 27, 81], [5, 25]
    want_a = alone.forward(np.array(a, np.int32), all_logits=True)
    alone.reset()
    want_b = alone.forward(np.array(b, np.int32), all_logits=True)
    logits = core.forward_batch(np.array(b + a, np.int32), np.array([2, 2, 0, 0, 0, 0], np.int32),
                                np.array([0, 1, 0, 1, 2, 3], np.int64), np.array([1, 0, 0, 1, 0, 1], np.uint8))
    assert logits.shape == (3, tiny.config.n_vocab)
    assert np.array_equal(logits, np.stack([want_b[0], want_a[1], want_a[3]]))
    assert (core.seq_n_past(0), core.seq_n_past(1), core.seq_n_past(2)) == (4, 0, 2)


def test_copy_prefix_truncate_and_clear_continue_as_a_fresh_prefill(tiny):
    core = make_core(tiny, 4, 2)
    fresh = make_core(tiny, 1, 2)
    shared, tail_a, tail_b = [7, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [40, 41], [50, 51, 52]
    core.forward_batch(np.array(shared + tail_a, np.int32), np.zeros(20, np.int32), np.arange(20, dtype=np.int64),
                       np.zeros(20, np.uint8))
    # Sequence 1 gets the shared 18 positions (a partial key block) and goes its own way.
    core.seq_copy_prefix(0, 1, len(shared))
    assert core.seq_n_past(1) == len(shared) and core.seq_n_past(0) == 20
    got = core.forward_batch(np.array(tail_b, np.int32), np.ones(3, np.int32), np.arange(18, 21, dtype=np.int64),
                             np.ones(3, np.uint8))
    want = fresh.forward(np.array(shared + tail_b, np.int32), all_logits=True)[-3:]
    assert np.array_equal(got, want)
    # Truncating sequence 0 back into the shared part and continuing equals a fresh prefill too.
    core.seq_truncate(0, 5)
    got = core.forward_batch(np.array(tail_b, np.int32), np.zeros(3, np.int32), np.arange(5, 8, dtype=np.int64),
                             np.ones(3, np.uint8))
    fresh.reset()
    assert np.array_equal(got, fresh.forward(np.array(shared[:5] + tail_b, np.int32), all_logits=True)[-3:])
    core.seq_clear(1)
    assert core.seq_n_past(1) == 0 and core.seq_n_past(0) == 8


@pytest.mark.parametrize("case, error, words", [
    ("split run", ValueError, "consecutive"),
    ("wrong position", ValueError, "comes next"),
    ("sequence out of range", IndexError, "sequence id"),
    ("token out of range", IndexError, "vocabulary"),
    ("past n_ctx", ValueError, "n_ctx"),
    ("lengths differ", ValueError, "one length"),
    ("empty", ValueError, "at least one"),
])
def test_a_malformed_batch_is_refused_and_changes_nothing(tiny, case, error, words):
    core = make_core(tiny, 2, 1, n_ctx=16)
    core.forward_batch(np.array([1, 2], np.int32), np.array([0, 1], np.int32), np.array([0, 0], np.int64),
                       np.ones(2, np.uint8))
    tokens, seqs, pos = [3, 4, 5], [0, 1, 0], [1, 1, 2]
    if case == "wrong position":
        seqs, pos = [0, 0, 1], [1, 3, 1]
    elif case == "sequence out of range":
        seqs, pos = [0, 2, 2], [1, 0, 1]
    elif case == "token out of range":
        tokens, seqs, pos = [3, tiny.config.n_vocab, 5], [0, 0, 1], [1, 2, 1]
    elif case == "past n_ctx":
        tokens, seqs, pos = [3] * 16, [0] * 16, list(range(1, 17))
    elif case == "empty":
        tokens, seqs, pos = [], [], []
    want = np.ones(len(tokens) - (case == "lengths differ"), np.uint8)
    with pytest.raises(error, match=words):
        core.forward_batch(np.array(tokens, np.int32), np.array(seqs, np.int32), np.array(pos, np.int64), want)
    assert (core.seq_n_past(0), core.seq_n_past(1)) == (1, 1)


def test_sequence_operations_check_their_arguments(tiny):
    core = make_core(tiny, 2, 1)
    core.forward(np.array([1, 2, 3], np.int32))
    with pytest.raises(IndexError, match="sequence 2"):
        core.seq_clear(2)
    with pytest.raises(IndexError):
        core.seq_truncate(0, 4)
    with pytest.raises(IndexError):
        core.seq_copy_prefix(0, 1, 4)
    with pytest.raises(IndexError):
        core.seq_copy_prefix(0, -1, 1)
    assert core.seq_n_past(0) == 3 and core.n_seq == 2


def test_every_sequence_has_its_own_full_window(tiny):
    core = make_core(tiny, 3, 1, n_ctx=16)
    for s in range(3):
        core.forward_batch(np.arange(16, dtype=np.int32), np.full(16, s, np.int32), np.arange(16, dtype=np.int64),
                           np.zeros(16, np.uint8))
    assert [core.seq_n_past(s) for s in range(3)] == [16, 16, 16]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_others", [3, 15])
def test_smollm2_batched_with_others_gives_the_bits_it_gives_alone(smollm2_path, n_threads, n_others):
    model = load_gguf(smollm2_path)
    prompts = prompts_for(n_others + 1, model.config.n_vocab, seed=100 + n_others)
    alone_core = make_core(model, 1, n_threads)
    alone = [run_alone(alone_core, p) for p in prompts]
    tokens, rows = run_batched(make_core(model, n_others + 1, n_threads), prompts, max_chunk=9, seed=n_threads)
    for s, (want_tokens, want_rows) in enumerate(alone):
        assert tokens[s] == want_tokens, s
        assert np.array_equal(rows[s], want_rows), s
