"""`edgellama chat`: an interactive conversation with streamed answers.

At a terminal: a line ending in a backslash continues on the next line, and a line holding only
triple quotes (three double-quote characters) opens a block that the next such line closes.
Slash commands (see HELP) change the session. Ctrl-C stops the current answer and keeps the
session; Ctrl-D exits. With stdin not a terminal every line is one message (or command), so a
conversation can be scripted; answers go to stdout, notices and statistics to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from edgellama.cli.common import add_device_argument, log, positive_int

HELP = """Commands:
  /help                 this help
  /reset                forget the conversation (keeps the system prompt)
  /system TEXT          set the system prompt (/system alone removes it)
  /set NAME VALUE       change a setting (/set alone lists them), e.g. /set temp 0.7
  /save FILE            write the conversation and settings to FILE (JSON)
  /load FILE            read a conversation saved with /save
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
    chat.add_argument("-n", "--max-tokens", type=positive_int, default=DEFAULT_SETTINGS["max_tokens"],
                      help="tokens per answer at most (default 512)")
    chat.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    chat.add_argument("-c", "--ctx", type=positive_int, default=None, help="context window in tokens")
    chat.add_argument("--temp", type=float, default=DEFAULT_SETTINGS["temperature"], help="temperature (0: greedy)")
    chat.add_argument("--top-k", type=int, default=DEFAULT_SETTINGS["top_k"])
    chat.add_argument("--top-p", type=float, default=DEFAULT_SETTINGS["top_p"])
    chat.add_argument("--min-p", type=float, default=DEFAULT_SETTINGS["min_p"])
    chat.add_argument("--repeat-penalty", type=float, default=DEFAULT_SETTINGS["repeat_penalty"])
    chat.add_argument("--seed", type=int, default=None)
    add_device_argument(chat)
    chat.set_defaults(handler=cmd_chat)


def parse_setting(name: str, value: str):
    """(canonical name, typed value) for `/set name value`; ValueError with a reason otherwise."""
    key = ALIASES.get(name.lower().replace("-", "_"))
    if key is None:
        raise ValueError(f"unknown setting '{name}' (settings: {', '.join(SETTINGS)})")
    kind = SETTINGS[key][0]
    if key in ("seed", "max_tokens") and value.lower() in ("none", "off", "-"):
        return key, None
    try:
        typed = kind(value)
    except ValueError:
        raise ValueError(f"{key} needs a{'n integer' if kind is int else ' number'}, got '{value}'") from None
    return key, typed


class ChatSession:
    """A conversation with one model: history, settings, and the commands that change them."""

    def __init__(self, llm, system: Optional[str] = None, settings: Optional[Dict[str, Any]] = None,
                 out=None, notice=None):
        self.llm = llm
        self.settings = dict(DEFAULT_SETTINGS)
        if settings:
            self.settings.update(settings)
        self._check_settings(self.settings)
        self.messages: List[Dict[str, str]] = []
        if system:
            self.messages.append({"role": "system", "content": system})
        self.out = out or sys.stdout
        self.notice = notice or log
        self.last_stats = None
        self.turns_dropped = 0

    # --- settings and history -----------------------------------------------------------------
    @staticmethod
    def _check_settings(settings: Dict[str, Any]) -> None:
        from edgellama.sampling import SamplingParams

        SamplingParams(**{k: v for k, v in settings.items() if k not in ("seed", "max_tokens")})
        if settings["max_tokens"] is not None and settings["max_tokens"] < 1:
            raise ValueError("max_tokens must be at least 1")

    def set(self, name: str, value: str) -> str:
        key, typed = parse_setting(name, value)
        trial = dict(self.settings, **{key: typed})
        self._check_settings(trial)
        self.settings = trial
        return f"{key} = {typed}"

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

    def load(self, path: str) -> int:
        """Replaces the conversation (and the settings it carries) with those of a /save file.
        Returns the number of messages. ValueError when the file is not such a conversation."""
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not JSON: {exc}") from None
        messages = data.get("messages") if isinstance(data, dict) else data
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise ValueError(f"{path} holds no conversation (a list of {{role, content}} messages)")
        settings = dict(self.settings)
        if isinstance(data, dict) and isinstance(data.get("settings"), dict):
            settings.update({k: v for k, v in data["settings"].items() if k in SETTINGS})
            self._check_settings(settings)
        self.settings = settings
        self.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        return len(self.messages)

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
        Ctrl-C (KeyboardInterrupt) ends the answer early; what was printed is kept."""
        from edgellama.api import make_sampler, run_records

        self.messages.append({"role": "user", "content": text})
        try:
            ids = self._fit_prompt()
        except Exception:
            self.messages.pop()
            raise
        s = self.settings
        sampler = make_sampler(s["temperature"], s["top_k"], s["top_p"], s["min_p"], s["typical_p"],
                               s["repeat_penalty"], s["frequency_penalty"], s["presence_penalty"],
                               s["penalty_last_n"], None, s["seed"])
        pieces: List[str] = []
        interrupted = False
        records = run_records(self.llm, ids, s["max_tokens"], sampler, None)
        start = time.perf_counter()
        try:
            for record in records:
                if record.text:
                    pieces.append(record.text)
                    self.out.write(record.text)
                    self.out.flush()
        except KeyboardInterrupt:
            interrupted = True
            records.close()
        elapsed = time.perf_counter() - start
        self.out.write("\n")
        self.out.flush()
        answer = "".join(pieces)
        self.messages.append({"role": "assistant", "content": answer})
        self.last_stats = self.llm.last_stats
        st = self.last_stats
        rate = st.generated_tokens / st.decode_seconds if st.decode_seconds > 0 else 0.0
        self.notice(f"[{'interrupted; ' if interrupted else ''}{st.generated_tokens} tokens, {rate:.1f} tok/s, "
                    f"prompt {st.prompt_tokens} ({st.reused_tokens} cached), {elapsed:.1f} s]")
        return answer

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
                n = self.load(rest)
                self.notice(f"[loaded {n} messages from {rest}]")
            elif name == "stats":
                self.notice(self.stats_text())
            else:
                self.notice(f"unknown command /{name}; /help lists them")
        except (ValueError, OSError) as exc:
            self.notice(f"error: {exc}")
        return True


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


def cmd_chat(args) -> int:
    from edgellama.model import Llama
    from edgellama.models import resolve_model

    model_path = resolve_model(args.model, log=log)
    interactive = sys.stdin.isatty()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads, device=args.device)
    settings = {"temperature": args.temp, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
                "repeat_penalty": args.repeat_penalty, "seed": args.seed, "max_tokens": args.max_tokens}
    session = ChatSession(llm, system=args.system, settings=settings)
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
        if text.startswith("/"):
            if not session.command(text):
                return 0
            continue
        try:
            session.ask(text)
        except ValueError as exc:
            log(f"error: {exc}")
