"""Guard overhead per chat turn: Llama Guard's input and output checks against the turn itself.

    python benchmarks/bench_guard.py --base LLAMA-1B.gguf [--tokenizer DIR] [-t 2] [--answer 200] [-r 5]

The chat model and the guard are both the 1B shape (--base, e.g. `edgellama quantize --synthetic
llama3.2-1b`), given the real Llama 3.2 vocabulary (--tokenizer, a Hugging Face folder; the
tests' cached copy by default) so that "safe" and "unsafe" are single tokens as in Llama Guard 3
1B. A turn is a chat completion of --answer tokens (end of turn banned, so every turn is as long);
its overhead is the time of the guard's input check plus its output check, over the turn's time.
The safe path (one forward pass each) is the common one; the unsafe path adds a short generation
for the categories, and is reported too. Median of -r turns; each check after the first reuses
the cached instructions and categories.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgellama import Llama
from edgellama.guard import LlamaGuard
from edgellama.models import cache_dir

QUESTIONS = ["How do I bake bread at home?", "What should I pack for a week of hiking?",
             "Explain how vaccines train the immune system.", "Write a short poem about the sea.",
             "How do I change a flat tyre?", "What is the capital of Australia, and why there?"]


def with_vocabulary(base: Path, tokenizer_dir: Path, out: Path) -> Path:
    """`base` with the tokenizer of `tokenizer_dir` (same vocabulary size), written to `out`."""
    import gguf

    from edgellama.tokenizer_convert import tokenizer_metadata_from_hf

    if out.exists():
        return out
    meta = tokenizer_metadata_from_hf(tokenizer_dir)
    reader = gguf.GGUFReader(str(base))
    n_vocab = next(t.shape[1] for t in reader.tensors if t.name == "token_embd.weight")
    writer = gguf.GGUFWriter(str(out), "llama")
    for name, field in reader.fields.items():
        if name.startswith(("tokenizer.", "GGUF.", "general.architecture", "general.name")):
            continue
        value = field.contents()
        writer.add_key_value(name, value, field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    writer.add_name("Llama Guard 3 1B shape (synthetic weights)")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    writer.add_token_list(meta["tokenizer.ggml.tokens"][:n_vocab])
    writer.add_token_types(list(meta["tokenizer.ggml.token_type"])[:n_vocab])
    writer.add_token_merges(meta["tokenizer.ggml.merges"])
    writer.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(128009)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def turn(llm: Llama, guard: LlamaGuard, question: str, answer_tokens: int) -> dict:
    ask = [{"role": "user", "content": question}]
    bias = {t: float("-inf") for t in llm.tokenizer.stop_ids}
    start = time.perf_counter()
    check_in = guard.check_input(ask)
    after_input = time.perf_counter()
    reply = llm.create_chat_completion(ask, max_tokens=answer_tokens, temperature=0.7, seed=1, logit_bias=bias)
    after_answer = time.perf_counter()
    answered = ask + [reply["choices"][0]["message"]]
    check_out = guard.check_output(answered)
    end = time.perf_counter()
    return {"input_s": after_input - start, "answer_s": after_answer - after_input, "output_s": end - after_answer,
            "unsafe": (not check_in.safe) or (not check_out.safe)}


def measure(llm: Llama, guard: LlamaGuard, answer_tokens: int, reps: int) -> dict:
    turn(llm, guard, QUESTIONS[0], 8)  # the instructions and categories into the guard's cache
    runs = [turn(llm, guard, QUESTIONS[i % len(QUESTIONS)], answer_tokens) for i in range(reps)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("input_s", "answer_s", "output_s")}
    overhead = (med["input_s"] + med["output_s"]) / med["answer_s"]
    return {**{k: round(v, 3) for k, v in med.items()}, "overhead_pct": round(100 * overhead, 1),
            "unsafe_verdicts": sum(r["unsafe"] for r in runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="a 1B-shape GGUF (synthetic weights are fine)")
    ap.add_argument("--tokenizer", default=str(cache_dir() / "llama3.2-tokenizer"))
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--answer", type=int, default=200, help="tokens per answer")
    ap.add_argument("-r", "--reps", type=int, default=5)
    args = ap.parse_args()
    model = with_vocabulary(Path(args.base), Path(args.tokenizer),
                            Path(args.base).with_name(Path(args.base).stem + "-llama3-vocab.gguf"))
    llm = Llama(model, n_ctx=1024, n_threads=args.threads)
    shared = Llama(model, n_ctx=1024, n_threads=args.threads)
    report = {"safe path (threshold 1)": measure(llm, LlamaGuard(shared, "lg3-1b", threshold=1.0), args.answer,
                                                 args.reps),
              "unsafe path (threshold 0: categories generated)": measure(
                  llm, LlamaGuard(shared, "lg3-1b", threshold=0.0), args.answer, args.reps)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
