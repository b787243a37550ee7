"""`edgellama pull NAME`: fetch a model into the local cache."""

from __future__ import annotations

from edgellama.cli.common import log


def add_parser(sub) -> None:
    pull = sub.add_parser("pull", help="fetch a model into the local cache (by name or Hugging Face repo id)")
    pull.add_argument("name", help="smollm2-135m-instruct (the default model), or a Hugging Face repo id OWNER/REPO")
    pull.add_argument("--file", help="which .gguf file of a Hugging Face repo (when it holds several)")
    pull.set_defaults(handler=cmd_pull)


def cmd_pull(args) -> int:
    from edgellama.models import model_name, pull_model

    path = pull_model(args.name, filename=args.file, log=log, progress=True)
    print(f"{model_name(path)}\t{path}")
    return 0
