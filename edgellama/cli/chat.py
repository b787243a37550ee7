"""`edgellama chat`: an interactive conversation with streamed answers.

At a terminal: a line ending in a backslash continues on the next line, and a line holding only
triple quotes (three double-quote characters) opens a block that the next such line closes.
Slash commands (see HELP) change the session. Ctrl-C stops the current answer and keeps the
session; Ctrl-D exits. With stdin not a terminal every line is one message (or command), so a
conversation can be scripted; answers go to stdout, notices and statistics to stderr.

Every input line must be valid UTF-8: a line that is not is reported (with its first bad byte) and
not sent, and the session goes on. A failing command or answer never ends the session: /set and
/load check every setting with the API's own rules (SamplingParams, the sampler's seed) and change
nothing when one is wrong.

Settings given as command-line flags win over a /load file: /load replaces the conversation and the
file's other settings, keeps those, and says which it changed and which it kept.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from edgellama.cli.common import (EXPECTED_ERRORS, add_engine_arguments, add_device_argument,
                                  add_prompt_cache_argument, any_int, engine_options,
                                  check_text, finite_float, has_tokenizer, load_prompt_cache, log, one_line,
                                  positive_int, save_prompt_cache)
from edgellama.errors import EdgellamaError

HELP = """Commands:
  /help                 this help
  /reset                forget the conversation (keeps the system prompt)
  /system TEXT          set the system prompt (/system alone removes it)
  /set NAME VALUE       change a setting (/set alone lists them), e.g. /set temp 0.7
  /save FILE            write the conversation and settings to FILE (JSON)
  /load FILE            read a conversation saved with /save (settings given as
                        command-line flags are kept)
  /stats                tokens and speed of the last answer, context use
  /exit                 leave (as does Ctrl-D)
Input: end a line with \\ to continue it; a line of \"\"\" opens and closes a multi-line block.
Ctrl-C stops the current answer."""

# setting name -> (type, aliases). None is allowed for seed and max_tokens ("none").
SETTINGS = {
    "temperature": (float, ("temp", "t")),
    "top_k": (int, ("topk", "k")),
    "top_p": (float, ("topp", "p")),
    "min_p": (float, ("minp",)),
    "typical_p": (float, ("typical", "typ_p")),
    "repeat_penalty": (float, ("repeat", "rep")),
    "penalty_last_n": (int, ("repeat_last_n", "last_n")),
    "frequency_penalty": (float, ("frequency", "freq")),
    "presence_penalty": (float, ("presence",)),
    "seed": (int, ()),
    "max_tokens": (int, ("n", "max")),
}
ALIASES = {alias: name for name, (_, aliases) in SETTINGS.items() for alias in (name,) + aliases}

DEFAULT_SETTINGS: Dict[str, Any] = {
    "temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0, "repeat_penalty": 1.1,
    "penalty_last_n": 64, "frequency_penalty": 0.0, "presence_penalty": 0.0, "seed": None, "max_tokens": 512,
}


def add_parser(sub) -> None:
    chat = sub.add_parser("chat", help="talk with a model (streamed answers, history, /commands)")
    chat.add_argument("-m", "--model", help="GGUF file or a model name in the cache (default: SmolLM2-135M-Instruct)")
    chat.add_argument("-s", "--system", help="system prompt")
    # The settings' flags default to None, so that those the user typed are known (they win over /load).
    chat.add_argument("-n", "--max-tokens", type=positive_int, default=None,
                      help="tokens per answer at most (default 512)")
    chat.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    chat.add_argument("-c", "--ctx", type=positive_int, default=None, help="context window in tokens")
    chat.add_argument("--temp", type=finite_float, default=None, help="temperature (0: greedy; default 0.7)")
    chat.add_argument("--top-k", type=any_int, default=None, help="default 40")
    chat.add_argument("--top-p", type=finite_float, default=None, help="default 0.95")
    chat.add_argument("--min-p", type=finite_float, default=None, help="default 0.05")
    chat.add_argument("--repeat-penalty", type=finite_float, default=None, help="default 1.1")
    chat.add_argument("--seed", type=any_int, default=None)
    chat.add_argument("--guard", metavar="MODEL", default=None,
                      help="check every message and answer with this Llama Guard model (name, file or OWNER/REPO)")
    chat.add_argument("--code-shield", action="store_true",
                      help="scan the code in answers with Code Shield (needs the guard extra)")
    chat.add_argument("--no-context-shift", action="store_true",
                      help="end an answer that fills the context window (default: drop the oldest tokens after the "
                           "system prompt and go on)")
    add_prompt_cache_argument(chat)
    add_device_argument(chat)
    add_engine_arguments(chat)
    chat.set_defaults(handler=cmd_chat)


NULLABLE = ("seed", "max_tokens")  # settings that may be None ("none" after /set)
CHAT_FILE_FORMAT = "edgellama-chat/1"
MAX_CHAT_FILE_BYTES = 16 << 20  # far above any conversation a context window holds
ROLES = ("system", "user", "assistant")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def checked_settings(settings: Dict[str, Any]) -> Dict[str, Any]:
    """All the settings, checked by the API's own rules and in their canonical types: the sampling
    ones by SamplingParams, the seed by the sampler's rule (edgellama.arguments), max_tokens as an
    integer >= 1 or None. InvalidArgumentError (a ValueError) names the first wrong one."""
    from edgellama import arguments
    from edgellama.sampling import SamplingParams

    sampling = {k: v for k, v in settings.items() if k not in NULLABLE}
    params = SamplingParams(**sampling)
    checked = {k: getattr(params, k) for k in sampling}
    checked["seed"] = arguments.seed(settings["seed"])
    checked["max_tokens"] = arguments.optional_integer("max_tokens", settings["max_tokens"], at_least=1)
    return checked


def parse_setting(name: str, value: str):
    """(canonical name, typed value) for `/set name value`; ValueError with a reason otherwise
    (its range is checked by checked_settings)."""
    key = ALIASES.get(name.lower().replace("-", "_"))
    if key is None:
        raise ValueError(f"unknown setting '{name}' (settings: {', '.join(SETTINGS)})")
    kind = SETTINGS[key][0]
    if key in NULLABLE and value.lower() in ("none", "off", "-"):
        return key, None
    try:
        typed = kind(value)
    except ValueError:
        raise ValueError(f"{key} needs a{'n integer' if kind is int else ' number'}, got '{value}'") from None
    return key, typed


def read_chat_file(path: str) -> Any:
    """The JSON of a /save file; ValueError when it is not a regular file of UTF-8 JSON text
    of at most MAX_CHAT_FILE_BYTES (a FIFO or a device would block or never end)."""
    full = os.path.expanduser(path)
    if os.path.exists(full) and not os.path.isfile(full):
        raise ValueError("not a regular file")
    with open(full, "rb") as f:
        raw = f.read(MAX_CHAT_FILE_BYTES + 1)
    if len(raw) > MAX_CHAT_FILE_BYTES:
        raise ValueError(f"larger than {MAX_CHAT_FILE_BYTES >> 20} MiB, which no saved chat is")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def conversation_messages(data: Any) -> List[Dict[str, str]]:
    """The checked {role, content} messages of a /save file's JSON (or of a bare list of them)."""
    if isinstance(data, dict):
        if data.get("format", CHAT_FILE_FORMAT) != CHAT_FILE_FORMAT:
            raise ValueError(f"format {_shown(data['format'])} is not {CHAT_FILE_FORMAT}")
        data = data.get("messages")
    if not isinstance(data, list):
        raise ValueError("holds no conversation (a list of {role, content} messages)")
    messages = []
    for number, m in enumerate(data, 1):
        if not isinstance(m, dict):
            raise ValueError(f"message {number} is {_shown(m)}, not a {{role, content}} object")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"message {number} has role {_shown(role)}; roles are {', '.join(ROLES)}")
        if role == "system" and number != 1:
            raise ValueError(f"message {number}: a system message can only come first")
        if not isinstance(content, str):
            raise ValueError(f"message {number} ({role}) has content {_shown(content)}, which is not text")
        check_text(content, f"message {number}")
        messages.append({"role": role, "content": content})
    return messages


def loaded_settings(data: Any, current: Dict[str, Any]) -> Dict[str, Any]:
    """`current` updated with the checked settings of a /save file's JSON."""
    raw = data.get("settings", {}) if isinstance(data, dict) else {}
    if not isinstance(raw, dict):
        raise ValueError(f"settings is {_shown(raw)}, not an object")
    unknown = [key for key in raw if key not in SETTINGS]
    if unknown:
        raise ValueError(f"unknown setting {_shown(unknown[0])} (settings: {', '.join(SETTINGS)})")
    return checked_settings(dict(current, **raw))


class ChatSession:
    """A conversation with one model: history, settings, and the commands that change them."""

    def __init__(self, llm, system: Optional[str] = None, settings: Optional[Dict[str, Any]] = None,
                 out=None, notice=None, pinned: Iterable[str] = (), guards=None, context_shift: bool = True,
                 prompt_cache: Optional[str] = None):
        """pinned: names of settings a /load file does not change (those given as command-line
        flags); guards: None or an edgellama.guard.chat.Guards (--guard, --code-shield) whose
        verdicts show as notices. context_shift: an answer that fills the window goes on after
        dropping old tokens past the system prompt (Llama.create_completion's context_shift).
        prompt_cache: a session file that keeps the evaluated system prompt for the
        next process (read at start, written after the first answer when it did not hold it)."""
        self.llm = llm
        self.guards = guards
        self.context_shift = context_shift
        self.prompt_cache = prompt_cache
        self._cached_prefix: List[int] = []
        if prompt_cache is not None:
            load_prompt_cache(llm, prompt_cache)
            self._cached_prefix = llm.cached_tokens
        self.settings = checked_settings(dict(DEFAULT_SETTINGS, **(settings or {})))
        self.pinned = frozenset(pinned)
        unknown = sorted(self.pinned - set(SETTINGS))
        if unknown:
            raise ValueError(f"pinned: unknown setting {unknown[0]!r}")
        self.messages: List[Dict[str, str]] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.out = out or sys.stdout
        self.notice = notice or log
        self.last_stats = None
        self.turns_dropped = 0

    # --- settings and history -----------------------------------------------------------------
    def set(self, name: str, value: str) -> str:
        """Changes one setting from its /set text; ValueError, and no change, when it is wrong."""
        key, typed = parse_setting(name, value)
        self.settings = checked_settings(dict(self.settings, **{key: typed}))
        return f"{key} = {self.settings[key]}"

    @property
    def system_prompt(self) -> Optional[str]:
        if self.messages and self.messages[0]["role"] == "system":
            return self.messages[0]["content"]
        return None

    def set_system(self, text: str) -> None:
        if self.system_prompt is not None:
            self.messages.pop(0)
        if text:
            self.messages.insert(0, {"role": "system", "content": text})

    def reset(self) -> None:
        self.messages = [m for m in self.messages[:1] if m["role"] == "system"]

    def save(self, path: str) -> None:
        """Writes {"format", "model", "settings", "messages"} as JSON, atomically: a temporary file
        in the same folder is renamed over the target, so a crash never leaves half a file."""
        data = {"format": "edgellama-chat/1", "model": self.llm.model_name, "settings": self.settings,
                "messages": self.messages}
        target = os.path.abspath(os.path.expanduser(path))
        if os.path.exists(target) and not os.path.isfile(target):
            # os.replace would put the file in place of a folder's name or a device such as /dev/null.
            raise ValueError(f"{path} is not a regular file: give the path of a file to write")
        fd, tmp = tempfile.mkstemp(prefix=".edgellama-chat-", suffix=".json", dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def load(self, path: str) -> Tuple[int, Dict[str, Any], Dict[str, Any]]:
        """Replaces the conversation, and the settings it carries except the pinned ones, with
        those of a /save file. Returns (number of messages, settings it changed, pinned settings
        it would have changed: their file values). ValueError naming the file and the problem
        when it is not such a conversation (a setting of the wrong type or range, a message that
        is not text ...); the session is then unchanged."""
        try:
            data = read_chat_file(path)
            messages = conversation_messages(data)
            wanted = loaded_settings(data, self.settings)  # every value checked, the pinned ones too
            settings = checked_settings({k: self.settings[k] if k in self.pinned else v for k, v in wanted.items()})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}; nothing was loaded") from None
        changed = {k: v for k, v in settings.items() if v != self.settings[k]}
        kept = {k: wanted[k] for k in SETTINGS if k in self.pinned and wanted[k] != self.settings[k]}
        self.settings, self.messages = settings, messages
        return len(self.messages), changed, kept

    # --- answering ----------------------------------------------------------------------------
    def _fit_prompt(self) -> List[int]:
        """The prompt ids of the conversation, dropping the oldest turns (never the system prompt
        or the newest message) until it leaves room for an answer in the context window."""
        from edgellama.api import chat_prompt_ids

        n_ctx = self.llm.n_ctx
        room = min(self.settings["max_tokens"] or n_ctx // 4, n_ctx // 4)
        dropped = 0
        while True:
            ids = chat_prompt_ids(self.llm, self.messages)
            if len(ids) + room <= n_ctx:
                break
            first = 1 if self.system_prompt is not None else 0
            last = len(self.messages) - 1  # the new user message stays
            if first >= last:
                if len(ids) < n_ctx:
                    break  # nothing left to drop: answer in whatever room remains
                raise ValueError(f"the message needs {len(ids)} tokens, more than the context window "
                                 f"({n_ctx}); it was not sent")
            end = first + 1
            while end < last and self.messages[end]["role"] != "user":
                end += 1
            del self.messages[first:end]
            dropped += 1
        if dropped:
            self.turns_dropped += dropped
            self.notice(f"[context window full ({n_ctx} tokens): dropped the {dropped} oldest "
                        f"turn{'s' if dropped > 1 else ''}"
                        f"{', kept the system prompt' if self.system_prompt is not None else ''}]")
        return ids

    def ask(self, text: str) -> str:
        """Adds the user's message, streams the answer to out, records it, reports tokens/s.
        Ctrl-C (KeyboardInterrupt) ends the answer early; what was printed is kept. An error
        (before or during the answer) is raised with the user's message taken back out of the
        history, so that the conversation has no half turn."""
        from edgellama.api import make_sampler, run_records, system_prefix_length

        self.messages.append({"role": "user", "content": text})
        if self._blocked_request():
            self.messages.pop()
            return ""
        s = self.settings
        try:
            ids = self._fit_prompt()
            sampler = make_sampler(s["temperature"], s["top_k"], s["top_p"], s["min_p"], s["typical_p"],
                                   s["repeat_penalty"], s["frequency_penalty"], s["presence_penalty"],
                                   s["penalty_last_n"], None, s["seed"])
            keep = system_prefix_length(self.llm, self.messages, ids)
            shift = {"keep": self.llm._context_keep(True, ids, keep)} if self.context_shift else {}
            records = run_records(self.llm, ids, s["max_tokens"], sampler, None, **shift)
        except BaseException:
            self.messages.pop()
            raise
        pieces: List[str] = []
        interrupted = False
        start = time.perf_counter()
        code = _CodeWatch(self.guards)
        try:
            for record in records:
                if record.text:
                    pieces.append(record.text)
                    self.out.write(record.text)
                    self.out.flush()
                    if code.blocked(record.text):
                        records.close()
                        break
        except KeyboardInterrupt:
            interrupted = True
            records.close()
        except BaseException:
            records.close()
            self.messages.pop()
            if pieces:
                self.out.write("\n")  # the error message goes on a line of its own
                self.out.flush()
            raise
        elapsed = time.perf_counter() - start
        self.out.write("\n")
        self.out.flush()
        answer = "".join(pieces)
        if code.verdict is not None or self._blocked_answer(answer):
            from edgellama.guard.chat import refusal

            if code.verdict is not None:
                self.notice(f"[{refusal(code.verdict)} The turn was taken out of the history.]")
            self.messages.pop()
            return ""
        self.messages.append({"role": "assistant", "content": answer})
        self._save_prompt_cache(keep)
        self.last_stats = self.llm.last_stats
        st = self.last_stats
        rate = st.generated_tokens / st.decode_seconds if st.decode_seconds > 0 else 0.0
        self.notice(f"[{'interrupted; ' if interrupted else ''}{st.generated_tokens} tokens, {rate:.1f} tok/s, "
                    f"prompt {st.prompt_tokens} ({st.reused_tokens} cached), {elapsed:.1f} s]")
        return answer

    def _save_prompt_cache(self, n_system: Optional[int]) -> None:
        """Writes the evaluated system prompt to the --prompt-cache file, unless it holds it already."""
        if self.prompt_cache is None or not n_system:
            return
        prefix = self.llm.cached_tokens[:n_system]
        if len(prefix) == n_system and prefix != self._cached_prefix:
            save_prompt_cache(self.llm, self.prompt_cache, n_system)
            self._cached_prefix = prefix

    def _blocked_request(self) -> bool:
        """Llama Guard's verdict on the new message, as a notice; True when it is blocked."""
        if self.guards is None or self.guards.guard is None:
            return False
        from edgellama.guard.chat import refusal

        blocked = self.guards.check_request(self.messages)
        if blocked is not None:
            self.notice(f"[{refusal(blocked)} P(unsafe) {_p_unsafe(blocked)}; it was not sent]")
            return True
        return False

    def _blocked_answer(self, answer: str) -> bool:
        """Llama Guard's (and Code Shield's) verdict on the answer, as a notice; True when blocked."""
        if self.guards is None:
            return False
        from edgellama.guard.chat import refusal

        blocked = self.guards.check_answer(self.messages, answer)
        if blocked is not None:
            self.notice(f"[{refusal(blocked)} The turn was taken out of the history.]")
            return True
        return False

    def stats_text(self) -> str:
        lines = [f"model: {self.llm.model_name}; context: {self.llm.n_past}/{self.llm.n_ctx} tokens cached; "
                 f"{len(self.messages)} messages; {self.turns_dropped} turns dropped so far"]
        st = self.last_stats
        if st is None:
            lines.append("no answer yet")
        else:
            lines.append(f"last answer: prompt {st.prompt_tokens} tokens ({st.reused_tokens} reused from the cache, "
                         f"{st.prompt_tokens - st.reused_tokens} prefilled in {st.prefill_seconds:.2f} s); "
                         f"{st.generated_tokens} tokens in {st.decode_seconds:.2f} s "
                         f"({st.decode_tokens_per_second:.1f} tok/s)")
        lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        return "\n".join(lines)

    # --- commands -----------------------------------------------------------------------------
    def _loaded_text(self, path: str, n: int, changed: Dict[str, Any], kept: Dict[str, Any]) -> str:
        text = f"[loaded {n} messages from {path}; "
        text += ("settings changed: " + _listed(changed)) if changed else "settings unchanged"
        if kept:
            text += ("; kept as given on the command line: "
                     + ", ".join(f"{k}={self.settings[k]} (the file has {v})" for k, v in kept.items()))
        return text + "]"

    def command(self, line: str) -> bool:
        """Runs a slash command; False means leave. Problems are reported, never raised."""
        name, _, rest = line[1:].strip().partition(" ")
        rest = rest.strip()
        name = name.lower()
        try:
            if name in ("help", "h", "?"):
                self.notice(HELP)
            elif name in ("exit", "quit", "bye"):
                return False
            elif name in ("reset", "clear"):
                self.reset()
                self.notice("[conversation cleared" + (", system prompt kept]" if self.system_prompt else "]"))
            elif name == "system":
                self.set_system(rest)
                self.notice(f"[system prompt set: {rest}]" if rest else "[system prompt removed]")
            elif name == "set":
                if not rest:
                    self.notice(", ".join(f"{k}={v}" for k, v in self.settings.items()))
                else:
                    key, _, value = rest.partition(" ")
                    if not value.strip():
                        raise ValueError("usage: /set NAME VALUE (e.g. /set temp 0.7)")
                    self.notice(f"[{self.set(key, value.strip())}]")
            elif name == "save":
                if not rest:
                    raise ValueError("usage: /save FILE")
                self.save(rest)
                self.notice(f"[saved {len(self.messages)} messages to {rest}]")
            elif name == "load":
                if not rest:
                    raise ValueError("usage: /load FILE")
                self.notice(self._loaded_text(rest, *self.load(rest)))
            elif name == "stats":
                self.notice(self.stats_text())
            else:
                self.notice(f"unknown command /{name}; /help lists them")
        except EXPECTED_ERRORS as exc:
            self.notice(f"error: {one_line(exc)}")
        except Exception as exc:  # a bug must not end the session (and lose the conversation) either
            self.notice(f"error: /{name} failed unexpectedly: {type(exc).__name__}: {one_line(exc)}")
        return True


def _listed(settings: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def use_surrogateescape_stdin() -> None:
    """Undecodable stdin bytes arrive as lone surrogates (checked per line by check_text) instead of
    a UnicodeDecodeError that would end the session; input() at a terminal decodes the same way."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")


def read_message(interactive: bool) -> Optional[str]:
    """The next message, or None at end of input. Ctrl-C at the prompt raises KeyboardInterrupt."""
    if not interactive:
        line = sys.stdin.readline()
        return None if line == "" else line.rstrip("\r\n")
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if line.strip() == '"""':
        block = []
        while True:
            try:
                more = input("... ")
            except EOFError:
                break
            if more.strip() == '"""':
                break
            block.append(more)
        return "\n".join(block)
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        try:
            line = input("... ")
        except EOFError:
            line = ""
            break
    lines.append(line)
    return "\n".join(lines)


class _CodeWatch:
    """Code Shield over an answer as it streams: blocked(piece) is True once a closed code block
    is blocked (the verdict is kept)."""

    def __init__(self, guards):
        from edgellama.guard import CodeBlockWatcher

        self.shield = guards if guards is not None and guards.code_shield is not None else None
        self.watcher = CodeBlockWatcher()
        self.verdict = None

    def blocked(self, piece: str) -> bool:
        if self.shield is None:
            return False
        for block in self.watcher.feed(piece):
            self.verdict = self.verdict or self.shield.scan_block(block.language, block.code)
        return self.verdict is not None


def _p_unsafe(blocked: Dict[str, Any]) -> str:
    verdict = blocked.get("input") or blocked.get("output") or {}
    return f"{verdict['p_unsafe']:.2f}" if "p_unsafe" in verdict else "unknown"


def _guards(args):
    """The safeguards --guard and --code-shield ask for (None without them)."""
    if args.guard is None and not args.code_shield:
        return None
    from edgellama.guard import CodeShield, LlamaGuard
    from edgellama.guard.chat import Guards
    from edgellama.models import resolve_model

    guard = LlamaGuard(resolve_model(args.guard, log=log, progress=True), n_threads=args.threads) \
        if args.guard is not None else None
    return Guards(guard, CodeShield() if args.code_shield else None)


def cmd_chat(args) -> int:
    from edgellama.model import Llama
    from edgellama.models import resolve_model

    if sys.stdin is None:
        raise ValueError("standard input is closed: chat reads the messages from it")
    system = check_text(args.system, "-s/--system") if args.system else args.system
    flags = {"temperature": args.temp, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
             "repeat_penalty": args.repeat_penalty, "seed": args.seed, "max_tokens": args.max_tokens}
    settings = {k: v for k, v in flags.items() if v is not None}  # the flags the user typed
    checked_settings(dict(DEFAULT_SETTINGS, **settings))  # before the model loads
    model_path = resolve_model(args.model, log=log, progress=True)
    interactive = sys.stdin.isatty()
    use_surrogateescape_stdin()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads, device=args.device, **engine_options(args))
    if not has_tokenizer(llm):
        raise EdgellamaError("this file has no tokenizer, which chat needs (`edgellama run --ids` takes token ids)")
    session = ChatSession(llm, system=system, settings=settings, pinned=settings, guards=_guards(args),
                          context_shift=not args.no_context_shift, prompt_cache=args.prompt_cache)
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        log(f"edgellama chat with {llm.model_name} (context {llm.n_ctx} tokens). /help for commands, "
            "Ctrl-C stops an answer, Ctrl-D exits.")
    while True:
        try:
            text = read_message(interactive)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            continue  # Ctrl-C at the prompt drops the line being typed
        if text is None:
            if interactive:
                print(file=sys.stderr)
            return 0
        if not text.strip():
            continue
        if not _send(session, text):
            return 0


def _send(session: ChatSession, text: str) -> bool:
    """Runs one line of input (a message or a command); False means leave. Errors and Ctrl-C are
    reported and the session goes on, except a closed stdout (BrokenPipeError), which ends it."""
    try:
        check_text(text, "the input line")
    except ValueError as exc:
        log(f"error: {exc}; it was not sent")
        return True
    try:
        if text.startswith("/"):
            return session.command(text)
        session.ask(text)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print(file=sys.stderr)  # Ctrl-C outside the answer's stream (which ask handles itself)
    except EXPECTED_ERRORS as exc:
        log(f"error: {one_line(exc)}")
    return True
