"""`edgellama list`: the models in the local cache, with size, quantization and architecture."""

from __future__ import annotations

from edgellama.errors import EdgellamaError


def add_parser(sub) -> None:
    lst = sub.add_parser("list", help="list the models in the local cache")
    lst.set_defaults(handler=cmd_list)


def cmd_list(args) -> int:
    from edgellama.gguf_loader import read_gguf_summary
    from edgellama.models import cache_dir, cached_models, model_name

    models = cached_models()
    if not models:
        print(f"no models in {cache_dir()}; fetch one with `edgellama pull smollm2-135m-instruct`")
        return 0
    rows = [("NAME", "SIZE", "QUANT", "ARCH")]
    for path in models:
        try:
            info = read_gguf_summary(path)
            size = f"{info['size_bytes'] / 1e6:.1f} MB"
            rows.append((model_name(path), size, info["quant"] or "?", info["architecture"] or "?"))
        except (EdgellamaError, OSError) as exc:
            rows.append((model_name(path), "?", "?", f"unreadable: {exc}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    print(f"({cache_dir()})")
    return 0
