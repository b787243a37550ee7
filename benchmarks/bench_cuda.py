"""Prefill and decode speed of the CUDA backend on synthetic Llama shapes, against the HBM roofline.

    python3 benchmarks/bench_cuda.py [--shapes llama-3.2-1b llama-3-8b] [--quants Q4_0 Q4_K_M Q8_0]
                                     [--variants default grouped_rows fused_attention ...]
                                     [--prefill 512] [--decode 64] [--context 128] [--json out.json]

Weights are random GGUF block bytes with sane f16 scales, made on the host once per tensor shape
and uploaded to a separate device buffer per layer (so every layer's bytes really stream from
HBM); no file is written. Decode reads, per token, every layer matrix, the output matrix and the
KV cache so far: roofline fraction = (those bytes × tokens/s) ÷ the HBM bandwidth (the card's
nominal figure where we know it, else the measured device-to-device copy bandwidth, both printed).
Decode is timed with the captured step (CUDA graph, the default) and, alternating in the same
process, with its kernels launched one by one ("no-graph": the difference is launch overhead) and
with the step returning only its greedy choice ("greedy": forward_greedy, the logits left on the
device; the difference is the logits' download).
Then each matmul kernel alone: GB/s per weight type on the 8B shape's four matrix shapes, weights
cycled through copies larger than the L2 (what a decode step could reach without its other costs),
and one 512-token prefill product per type with int8 tensor cores on and off.

Variants (--variants, model rows): "default" (what Llama(device="cuda") runs), or changes to it
joined by "+", an option's name turning it on and "no-NAME" off: grouped_rows (on by default)
uploads Q4_0, Q8_0 and Q6_K matrices regrouped for 16-byte loads (csrc/cuda/grouped_rows.h; in
Q4_K_M the Q6_K ones), fused_attention merges attention's splits in
its kernel and quantizes its output there, fused_swiglu_quant has the SwiGLU GEMV quantize its
output for ffn_down, fused_rope has a decode step's Q/K/V GEMV apply RoPE and fill the KV cache,
prefetch_weights has GEMV blocks prefetch their weight rows into the L2 before waiting for the
kernel before them (so, under programmatic dependent launch, while it runs); "precise" runs
activations="precise" (each token's matmul input as two int8 rows) instead of int8. The kernel
tables always time both weight layouts ("grp": grouped).

Q4_K_M here: Q4_K matrices with Q6_K for the output and for attn_v and ffn_down of every other
layer (llama.cpp's mix differs in which layers get Q6_K; the byte count per token is close).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

F32, Q4_0, Q8_0, Q4_K, Q6_K = 0, 2, 8, 12, 14
BLOCKS = {Q4_0: (32, 18), Q8_0: (32, 34), Q4_K: (256, 144), Q6_K: (256, 210)}

SHAPES = {
    "llama-3.2-1b": dict(n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, head_dim=64,
                         n_ff=8192, rope_base=500000.0),
    "llama-3-8b": dict(n_vocab=128256, n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, head_dim=128,
                       n_ff=14336, rope_base=500000.0),
}

# Nominal HBM bandwidth (bytes/s) by a fragment of the device name, most specific first.
NOMINAL_BANDWIDTH = [
    ("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12), ("A100 80GB PCIe", 1.935e12), ("A100", 1.555e12),
    ("L40S", 0.864e12), ("RTX 4090", 1.008e12), ("RTX 3090", 0.936e12), ("A10", 0.6e12),
]


def nominal_bandwidth(name: str):
    for fragment, bw in NOMINAL_BANDWIDTH:
        if fragment in name:
            return bw
    return None


def _f16_bytes(value: float) -> np.ndarray:
    return np.frombuffer(np.float16(value).tobytes(), np.uint8)


def random_blocks(qtype: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """rows x cols weights of qtype as random block bytes whose values have std ~ 1/sqrt(cols)."""
    block, nbytes = BLOCKS[qtype]
    n = rows * cols // block
    b = np.frombuffer(rng.bytes(n * nbytes), np.uint8).copy().reshape(n, nbytes)
    unit = 1.0 / np.sqrt(cols)
    if qtype == Q4_0:
        b[:, 0:2] = _f16_bytes(unit / 4.6)
    elif qtype == Q8_0:
        b[:, 0:2] = _f16_bytes(unit / 74.0)
    elif qtype == Q4_K:
        d = unit / (4.6 * 36.0)
        b[:, 0:2] = _f16_bytes(d)
        b[:, 2:4] = _f16_bytes(d * 7.5)  # centres d*sc*q - dmin*mn on average
    elif qtype == Q6_K:
        b[:, 208:210] = _f16_bytes(unit / (74.0 * 18.5))
    return b.reshape(-1)


class SyntheticModel:
    """Config and {name: (host address, type, rows, cols)} for a shape and a quantization mix."""

    def __init__(self, shape: str, quant: str, seed: int = 0):
        hp = SHAPES[shape]
        self.config = dict(hp, rope_dim=hp["head_dim"], rms_eps=1e-5)
        rng = np.random.default_rng(seed)
        self._arrays = {}  # (type, rows, cols) -> host bytes, shared by the layers
        self.tensors = {}
        self.bytes_per_token = 0
        e, f, L = hp["n_embd"], hp["n_ff"], hp["n_layer"]
        q_w, kv_w = hp["n_head"] * hp["head_dim"], hp["n_head_kv"] * hp["head_dim"]
        base = {"Q4_0": Q4_0, "Q8_0": Q8_0, "Q4_K_M": Q4_K}[quant]

        def matrix(name, qtype, rows, cols, per_token=True):
            key = (qtype, rows, cols)
            if key not in self._arrays:
                self._arrays[key] = random_blocks(qtype, rows, cols, rng)
            arr = self._arrays[key]
            self.tensors[name] = (arr.ctypes.data, qtype, rows, cols)
            if per_token:
                self.bytes_per_token += arr.nbytes

        def vector(name, n):
            arr = self._arrays.setdefault(("ones", n), np.ones(n, np.float32))
            self.tensors[name] = (arr.ctypes.data, F32, 1, n)
            self.bytes_per_token += arr.nbytes

        matrix("token_embd.weight", base, hp["n_vocab"], e, per_token=False)
        matrix("output.weight", Q6_K if quant == "Q4_K_M" else base, hp["n_vocab"], e)
        vector("output_norm.weight", e)
        for i in range(L):
            p = f"blk.{i}."
            heavy = Q6_K if (quant == "Q4_K_M" and i % 2 == 0) else base
            vector(p + "attn_norm.weight", e)
            vector(p + "ffn_norm.weight", e)
            matrix(p + "attn_q.weight", base, q_w, e)
            matrix(p + "attn_k.weight", base, kv_w, e)
            matrix(p + "attn_v.weight", heavy, kv_w, e)
            matrix(p + "attn_output.weight", base, e, q_w)
            matrix(p + "ffn_gate.weight", base, f, e)
            matrix(p + "ffn_up.weight", base, f, e)
            matrix(p + "ffn_down.weight", heavy, e, f)
        self.kv_bytes_per_position = 2 * L * kv_w * 2  # fp16 keys and values


VARIANT_OPTIONS = ("grouped_rows", "fused_attention", "fused_swiglu_quant", "fused_rope",  # CudaLlamaModel kwargs
                   "prefetch_weights")
VARIANT_LABELS = {"grouped_rows": "grp", "fused_attention": "fatt", "fused_swiglu_quant": "fsq", "fused_rope": "frope",
                  "prefetch_weights": "pf"}


def default_options() -> dict:
    """The engine options Llama(path, device="cuda") runs with (edgellama.cuda.CudaOptions)."""
    from edgellama.cuda import CudaOptions
    return CudaOptions().engine_options()


def variant_options(variant: str) -> dict:
    """The engine options of a variant: "default", or changes to the default joined by "+", each
    an option's name (on) or the name after "no-" (off): "fused_attention+no-grouped_rows"."""
    options = default_options()
    if variant == "default":
        return options
    for item in variant.split("+"):
        if item == "precise":  # activations="precise" (two int8 rows a token) instead of int8
            options["activations"] = "precise"
            continue
        name, on = (item[3:], False) if item.startswith("no-") else (item, True)
        if name not in VARIANT_OPTIONS:
            raise SystemExit(f"unknown variant option {item!r}; known: {', '.join(VARIANT_OPTIONS)} (each also "
                             "as no-NAME)")
        options[name] = on
    return options


def variant_label(quant: str, variant: str) -> str:
    """quant and the options that differ from the default: "Q4_0 fatt no-grp"."""
    default, options = default_options(), variant_options(variant)
    changes = [("" if on else "no-") + VARIANT_LABELS[name]
               for name, on in options.items() if name in default and on != default[name]]
    changes += ["precise"] if options.get("activations") == "precise" else []
    return " ".join([quant] + changes)


def bench_one(_cuda, shape, quant, args, bandwidth, bandwidth_source, variant="default"):
    t0 = time.perf_counter()
    syn = SyntheticModel(shape, quant)
    n_ctx = max(args.prefill, args.context + args.decode + 8) + 8
    model = _cuda.CudaLlamaModel(syn.config, syn.tensors, n_ctx, 1, **variant_options(variant))
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    vocab = syn.config["n_vocab"]

    # prefill: best of 2 after a short warm-up
    prompt = rng.integers(0, vocab, args.prefill).astype(np.int32)
    model.forward(prompt[:16], False)
    best = float("inf")
    for _ in range(2):
        model.reset()
        t = time.perf_counter()
        model.forward(prompt, False)
        best = min(best, time.perf_counter() - t)
    prefill_tps = args.prefill / best

    # decode: args.context tokens of context, then args.decode single-token steps; rounds alternate
    # between the captured step (CUDA graph) downloading the logits, the same with kernel-by-kernel
    # launches, and the captured step returning only its greedy choice; medians of each.
    steps = rng.integers(0, vocab, args.decode).astype(np.int32)

    def decode_round(mode: str) -> float:
        model.cuda_graphs = mode != "no-graph"
        step = model.forward_greedy if mode == "greedy" else (lambda ids: model.forward(ids, False))
        model.reset()
        model.forward(prompt[:args.context], False)
        for tok in rng.integers(0, vocab, 4):
            step(np.array([tok], np.int32))
        t = time.perf_counter()
        for tok in steps:
            step(np.array([tok], np.int32))
        return args.decode / (time.perf_counter() - t)

    by_mode = {"graph": [], "no-graph": [], "greedy": []}
    for _ in range(args.rounds):
        for mode in by_mode:
            by_mode[mode].append(decode_round(mode))
    model.cuda_graphs = True
    decode_tps = float(np.median(by_mode["graph"]))
    decode_tps_no_graph = float(np.median(by_mode["no-graph"]))
    decode_tps_greedy = float(np.median(by_mode["greedy"]))
    mean_pos = args.context + 4 + args.decode / 2
    bytes_per_token = syn.bytes_per_token + syn.kv_bytes_per_position * mean_pos
    achieved = bytes_per_token * decode_tps
    row = dict(shape=shape, quant=quant, variant=variant,
               weights_gb=syn.bytes_per_token / 1e9, setup_s=setup_s,
               prefill_tokens=args.prefill, prefill_tok_s=prefill_tps, decode_tok_s=decode_tps,
               decode_tok_s_kernel_by_kernel=decode_tps_no_graph, decode_tok_s_greedy_on_device=decode_tps_greedy,
               decode_ms=1e3 / decode_tps, decode_gb_s=achieved / 1e9,
               roofline_fraction=achieved / bandwidth, bandwidth_gb_s=bandwidth / 1e9,
               bandwidth_source=bandwidth_source)
    return row


# The 8B shape's matrices (rows, cols): attn_q/attn_output, attn_k/attn_v, ffn_gate/ffn_up, ffn_down.
KERNEL_SHAPES = [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)]
KERNEL_TYPES = {"Q4_0": Q4_0, "Q8_0": Q8_0, "Q4_K": Q4_K, "Q6_K": Q6_K}
# (label, type, grouped rows, prefetched weights) of the kernel tables: every type as stored in
# GGUF, and grouped; Q4_0 and Q4_K also with each launch prefetching its rows while the one before
# finishes ("pf").
KERNEL_CASES = [("Q4_0", Q4_0, False, False), ("Q4_0 pf", Q4_0, False, True), ("Q4_0 grp", Q4_0, True, False),
                ("Q8_0", Q8_0, False, False), ("Q8_0 grp", Q8_0, True, False), ("Q4_K", Q4_K, False, False),
                ("Q4_K pf", Q4_K, False, True), ("Q6_K", Q6_K, False, False), ("Q6_K grp", Q6_K, True, False)]


def bench_kernels(_cuda, bandwidth, n_tokens=1):
    """GB/s of one matmul launch per type and shape, weights from HBM (_cuda.time_matmul)."""
    rng = np.random.default_rng(2)
    rows_out = []
    print(f"\nmatmul kernels alone ({n_tokens} token{'s' if n_tokens > 1 else ''}; weights streamed from HBM)")
    print(f"{'type':<10}{'rows x cols':>14}{'MB':>8}{'us':>9}{'GB/s':>8}{'of HBM':>8}")
    for name, qtype, grouped, prefetch in KERNEL_CASES:
        for rows, cols in KERNEL_SHAPES:
            w = random_blocks(qtype, rows, cols, rng)
            seconds = _cuda.time_matmul(qtype, w, rows, cols, n_tokens=n_tokens, repeats=100, grouped_rows=grouped,
                                        prefetch_weights=prefetch)
            gbs = w.nbytes / seconds / 1e9
            rows_out.append(dict(type=name, rows=rows, cols=cols, n_tokens=n_tokens, us=seconds * 1e6, gb_s=gbs,
                                 fraction=gbs * 1e9 / bandwidth))
            print(f"{name:<10}{f'{rows}x{cols}':>14}{w.nbytes / 1e6:>8.1f}{seconds * 1e6:>9.1f}{gbs:>8.0f}"
                  f"{100 * gbs * 1e9 / bandwidth:>7.1f}%", flush=True)
    return rows_out


def bench_gemv_shapes(_cuda, bandwidth):
    """GB/s of one token's product per GEMV variant, per type and 8B matrix shape: block shapes
    (warps sharing a row group x its rows; the model launches one of them), then the launch shape
    with 2, 4, 8, 16 pieces in flight a lane, and with its registers uncapped: which the launch
    should use."""
    rng = np.random.default_rng(4)
    names = _cuda.gemv_probe_shapes()
    out = []
    print("\nGEMV variants, one token (GB/s; 'Nw xMr' = N warps sharing a row group of M rows; 'LNf' = the "
          "launch shape, N pieces in flight; 'Lnocap' = the launch shape, registers uncapped)")
    short = [n.replace(' warp(s) x ', 'w x').replace(' row(s)', 'r').replace('launch shape, ', 'L')
              .replace('registers uncapped', 'nocap')
              .replace(' in flight', 'f') for n in names]
    print(f"{'type':<10}{'rows x cols':>14}" + "".join(f"{n:>9}" for n in short))
    for name, qtype, grouped, prefetch in KERNEL_CASES:
        if prefetch:  # the shapes are compared without it
            continue
        for rows, cols in KERNEL_SHAPES:
            w = random_blocks(qtype, rows, cols, rng)
            line = f"{name:<10}{f'{rows}x{cols}':>14}"
            for i, shape in enumerate(names):
                seconds = _cuda.time_matmul(qtype, w, rows, cols, repeats=100, gemv_shape=i, grouped_rows=grouped)
                gbs = w.nbytes / seconds / 1e9
                out.append(dict(type=name, rows=rows, cols=cols, shape=shape, us=seconds * 1e6, gb_s=gbs,
                                fraction=gbs * 1e9 / bandwidth))
                line += f"{gbs:>9.0f}"
            print(line, flush=True)
    return out


def bench_prefill_kernels(_cuda, n_tokens=512, rows=14336, cols=4096):
    """Tera-ops/s of one prefill product (the 8B shape's ffn_gate) per type, with and without int8
    tensor cores (the 32-element formats use them from 16 tokens on; K-quants never)."""
    rng = np.random.default_rng(3)
    out = []
    print(f"\nprefill matmul {rows}x{cols}, {n_tokens} tokens (TOPS = 2*rows*cols*tokens / time)")
    print(f"{'type':<10}{'tensor cores':>14}{'ms':>9}{'TOPS':>8}")
    for name, qtype, grouped, prefetch in KERNEL_CASES:
        if qtype == Q6_K or prefetch:  # prefill products never prefetch
            continue
        w = random_blocks(qtype, rows, cols, rng)
        for tc in (True, False):
            seconds = _cuda.time_matmul(qtype, w, rows, cols, n_tokens=n_tokens, repeats=5, tensor_cores=tc,
                                        grouped_rows=grouped)
            tops = 2.0 * rows * cols * n_tokens / seconds / 1e12
            out.append(dict(type=name, tensor_cores=tc, n_tokens=n_tokens, ms=seconds * 1e3, tops=tops))
            print(f"{name:<10}{'on' if tc else 'off':>14}{seconds * 1e3:>9.2f}{tops:>8.1f}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--quants", nargs="+", default=["Q4_0", "Q4_K_M", "Q8_0"], choices=["Q4_0", "Q4_K_M", "Q8_0"])
    ap.add_argument("--variants", nargs="+", default=["default"],
                    help="engine variants of the model rows: default, or changes to the default joined by + "
                         f"(an option's name turns it on, no-NAME off: {', '.join(VARIANT_OPTIONS)}; "
                         "precise: precise activations)")
    ap.add_argument("--prefill", type=int, default=512, help="prompt length of the prefill measurement")
    ap.add_argument("--context", type=int, default=128, help="tokens in the cache before decode steps")
    ap.add_argument("--decode", type=int, default=64, help="decode steps timed")
    ap.add_argument("--rounds", type=int, default=3, help="decode rounds per mode (graph, kernel by kernel)")
    ap.add_argument("--no-kernels", dest="kernels", action="store_false",
                    help="skip the per-matrix kernel timings (GB/s of each type on the 8B shape's matrices)")
    ap.add_argument("--gemv-shapes", action="store_true",
                    help="also compare the GEMV block shapes and in-flight depths on each type and 8B matrix shape")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)

    from edgellama import _cuda

    count, why = _cuda.device_count()
    if count == 0:
        raise SystemExit(f"no CUDA GPU: {why}")
    name = _cuda.device_description(0)
    measured = _cuda.measure_copy_bandwidth()
    nominal = nominal_bandwidth(name)
    bandwidth, source = (nominal, "nominal") if nominal else (measured, "measured copy")
    print(f"device: {name}")
    print(f"HBM bandwidth: measured device-to-device copy {measured / 1e9:.0f} GB/s (read+write); "
          f"nominal {nominal / 1e9:.0f} GB/s" if nominal else "nominal unknown")
    print(f"roofline uses the {source} figure, {bandwidth / 1e9:.0f} GB/s")
    for variant in args.variants:
        variant_options(variant)  # unknown names fail before any model is built
    header = (f"{'shape':<14}{'quant':<28}{'GB/tok':>8}{'prefill tok/s':>15}{'decode tok/s':>14}"
              f"{'ms/tok':>8}{'GB/s':>8}{'roofline':>10}{'no-graph tok/s':>16}{'greedy tok/s':>14}{'vs default':>12}")
    print(header)
    rows = []
    for shape in args.shapes:
        for quant in args.quants:
            default_tps = None  # the decode speed of this shape and quant's default row, when measured first
            for variant in args.variants:
                r = bench_one(_cuda, shape, quant, args, bandwidth, source, variant)
                rows.append(r)
                if variant == "default":
                    default_tps = r["decode_tok_s"]
                label = variant_label(quant, variant)
                versus = f"{r['decode_tok_s'] / default_tps:>11.3f}x" if default_tps else f"{'':>12}"
                print(f"{shape:<14}{label:<28}{r['weights_gb']:>8.2f}{r['prefill_tok_s']:>15.0f}"
                      f"{r['decode_tok_s']:>14.1f}{r['decode_ms']:>8.2f}{r['decode_gb_s']:>8.0f}"
                      f"{100 * r['roofline_fraction']:>9.1f}%{r['decode_tok_s_kernel_by_kernel']:>16.1f}"
                      f"{r['decode_tok_s_greedy_on_device']:>14.1f}{versus}",
                      flush=True)
    kernels = bench_kernels(_cuda, bandwidth) if args.kernels else []
    prefill_kernels = bench_prefill_kernels(_cuda) if args.kernels else []
    gemv_shapes = bench_gemv_shapes(_cuda, bandwidth) if args.gemv_shapes else []
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(device=name, measured_copy_bandwidth=measured, nominal_bandwidth=nominal, rows=rows,
                           kernels=kernels, prefill_kernels=prefill_kernels, gemv_shapes=gemv_shapes), fh, indent=1)


if __name__ == "__main__":
    main()
