"""Rendering an untrusted chat template within limits on time, size and nesting.

A chat template comes from the model file, so it is attacker-controlled code. Jinja2's
sandbox keeps it away from Python internals, but not from spending unbounded time or memory:
``{% for %}`` loops nest, ``'x' * 10**9`` builds a gigabyte, a macro may call itself forever.
This module renders with these guards, and turns every failure into :class:`ChatTemplateError`:

* **Time.** A deadline (:data:`MAX_RENDER_SECONDS`) is checked at the top of every loop
  iteration and macro body (a check the code generator inserts), at every call, operator, filter
  and output chunk. Template code has no other way to repeat work, and no single step between
  two checks can run long, because of the next guard.
* **Size.** The operations whose result can be much larger than their operands are checked
  *before* they run: ``*``, ``**``, ``+``, ``%`` and ``str.format``, ``replace``, ``join``,
  ``center``/``ljust``/``rjust``/``zfill``, ``expandtabs``, ``int.to_bytes``, the filters
  ``center``, ``indent``, ``format``, ``join``, ``replace``, ``tojson``, ``batch``, ``slice``, and
  every conversion of a list or dict to text. No value may exceed :data:`MAX_OUTPUT_CHARS`
  characters (or a quarter as many items), no integer :data:`MAX_INT_BITS` bits, and all the
  values one render builds together may not exceed :data:`MAX_WORK_CHARS` characters.
* **Nesting.** Calls (macros, recursive loops) nest at most :data:`MAX_CALL_DEPTH` deep.
* **Output.** The rendered prompt is at most :data:`MAX_OUTPUT_CHARS` characters.
* **Source.** A template is at most :data:`MAX_TEMPLATE_CHARS` characters; parsing it runs no
  template code (filters and intercepted operators are never evaluated at compile time).

Filters and globals whose cost cannot be bounded this way, and that chat templates have no use
for, are not offered: ``wordwrap`` (quadratic on long words), ``urlize``, ``pprint`` and
``lipsum``; nor the string methods ``translate`` and ``maketrans``.
"""

from __future__ import annotations

import contextvars
import json
import re
import time
from collections.abc import Mapping, MappingView
from datetime import datetime
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Tuple

from jinja2 import nodes, pass_context, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.filters import make_attrgetter
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from edgellama.errors import EdgellamaError

__all__ = [
    "ChatTemplateError", "MAX_TEMPLATE_CHARS", "MAX_OUTPUT_CHARS", "MAX_RENDER_SECONDS",
    "MAX_CALL_DEPTH", "MAX_INT_BITS", "MAX_WORK_CHARS", "parse_template", "render_template",
]

#: The longest chat template accepted, in characters. Real templates are a few kilobytes (the
#: largest tool-calling ones about 20 KB); a longer one is refused when it is parsed.
MAX_TEMPLATE_CHARS = 128 * 1024

#: The longest rendered prompt, in characters, and the largest value (string, or a quarter as
#: many list or dict items) a template may build. 4 Mi characters is about a million tokens,
#: more than any supported context window holds.
MAX_OUTPUT_CHARS = 4 * 1024 * 1024

#: Wall-clock time one render may take, in seconds. A real render takes milliseconds; the limit
#: is checked between template steps, each of which the size limits keep short.
MAX_RENDER_SECONDS = 2.0

#: How deeply calls may nest (a macro calling a macro, a recursive loop): templates that render
#: nested JSON schemas recurse a few levels; a macro that calls itself for ever stops here.
MAX_CALL_DEPTH = 64

#: The largest integer, in bits, that template arithmetic may produce (``2 ** 4096``): without it
#: ``10 ** 10 ** 9`` would run inside one multiplication that no deadline can interrupt.
MAX_INT_BITS = 4096

#: The characters (list and dict items count 4) that all the values one render builds may add up
#: to. It bounds the memory a template can hold in many variables at once; a real render builds
#: a few times its output.
MAX_WORK_CHARS = 16 * MAX_OUTPUT_CHARS


class ChatTemplateError(EdgellamaError, ValueError):
    """The chat template is malformed, rejected the messages (``raise_exception``), failed while
    rendering, or exceeded a limit on time, size or nesting; or the messages are malformed."""


# ---------------------------------------------------------------------------------------------
# The state of one render: deadline, work budget, call depth.


class _RenderBudget:
    """Limits of the render in progress in this thread (or task). The first limit exceeded is
    remembered, so that the render fails even if template code swallowed the exception."""

    __slots__ = ("deadline", "work_left", "depth", "failure")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.work_left = MAX_WORK_CHARS
        self.depth = 0
        self.failure: Optional[str] = None

    def fail(self, problem: str) -> NoReturn:
        if self.failure is None:
            self.failure = problem
        raise ChatTemplateError(f"chat template: {self.failure}")

    def tick(self) -> None:
        if self.failure is not None:
            self.fail(self.failure)
        if time.monotonic() > self.deadline:
            self.fail(f"rendering took longer than {MAX_RENDER_SECONDS:g} s (a loop without end?)")

    def charge(self, value: Any) -> Any:
        """Count a value the template built against the limits; returns it."""
        size = len(value) if type(value) is str else _stored_size(value)
        if size > MAX_OUTPUT_CHARS:
            self.fail(f"a value of {size:,} characters (or a quarter as many items) was built; "
                      f"the limit is {MAX_OUTPUT_CHARS:,}")
        self.work_left -= size
        if self.work_left < 0:
            self.fail(f"the values built add up to more than {MAX_WORK_CHARS:,} characters")
        return value


_ACTIVE_BUDGET: contextvars.ContextVar[Optional[_RenderBudget]] = contextvars.ContextVar(
    "edgellama_chat_render_budget", default=None)


def _budget() -> _RenderBudget:
    # Template code runs only inside render_template, which sets a budget; a fresh one is a
    # safe default should a template ever be run another way (sizes stay bounded).
    return _ACTIVE_BUDGET.get() or _RenderBudget()


def _check_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        _budget().fail(f"{what} would build {size:,} characters or more; the limit is {MAX_OUTPUT_CHARS:,}")


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        _budget().fail(f"{what} would build an integer of about {bits:,} bits; the limit is {MAX_INT_BITS:,}")


# ---------------------------------------------------------------------------------------------
# Sizes, computed without building anything.

_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, set, frozenset, dict)
#: A string inside a list or dict becomes at most this many characters as text: repr escapes
#: (\U0010ffff) and JSON with ensure_ascii (\ud83d\ude00, two escapes per character).
_NESTED_CHAR_COST = 12


def _stored_size(value: Any) -> int:
    """What holding ``value`` costs, in characters: its length for text, 4 per item for a list,
    tuple, set or dict (a pointer, and the item it may share), 1 for anything else."""
    if isinstance(value, _TEXT):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return 4 * len(value)
    return 1


def _children(value: Any) -> Optional[Iterable[Any]]:
    """The values ``str(value)`` or JSON would spell out inside ``value``, or None for a leaf."""
    if isinstance(value, Namespace):
        return _children(value._Namespace__attrs)  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        return (x for pair in value.items() for x in pair)
    if isinstance(value, (list, tuple, set, frozenset, MappingView)):
        return value
    return None


def _text_size(value: Any, indent: int = 0, top_char_cost: int = 1) -> int:
    """An upper bound on the length of ``value`` as text (``str()``, repr, JSON with ``indent``
    spaces per level), walking containers without building anything. Shared items are counted
    each time they appear, as the text would spell them out; counting stops once the bound is
    past :data:`MAX_OUTPUT_CHARS`, so the walk costs at most that many steps."""
    if isinstance(value, str):
        return top_char_cost * len(value)
    total = 0
    stack: List[Tuple[Any, int]] = [(value, 0)]
    while stack and total <= MAX_OUTPUT_CHARS:
        item, depth = stack.pop()
        total += 2 + indent * depth  # quotes or brackets, a separator, a new line's indent
        if isinstance(item, str):
            total += (top_char_cost if depth == 0 else _NESTED_CHAR_COST) * len(item)
        elif isinstance(item, (bytes, bytearray)):
            total += 4 * len(item)  # \xNN
        elif item is None or isinstance(item, (bool, float, Undefined)):
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 2
        else:
            children = _children(item)
            if children is None:
                total += 256  # the repr of a function, a loop, a range ...
            else:
                stack.extend((child, depth + 1) for child in children)
    return total


def _indent_width(indent: Any) -> int:
    if isinstance(indent, str):
        return len(indent)
    return indent if isinstance(indent, int) and indent > 0 else 0


_DIGIT_RUN = re.compile(r"\d+")


def _format_size(fmt: str, values: List[Any], field_opener: str) -> int:
    """An upper bound on ``fmt % values`` or ``fmt.format(*values)``: each field (at most one per
    ``%`` or ``{``) is at most the widest value plus the widest width, which is a number written
    in ``fmt`` or (``*``, nested ``{}``) one of the values."""
    fields = fmt.count(field_opener)
    if fields == 0:
        return len(fmt)
    widest_value = max((_text_size(v) for v in values), default=0)
    widths = [int(d) if len(d) <= 9 else MAX_OUTPUT_CHARS + 1 for d in _DIGIT_RUN.findall(fmt)]
    widths += [abs(v) for v in values if isinstance(v, int)]
    return len(fmt) + fields * (widest_value + max(widths, default=0))


def _percent_values(args: Any) -> List[Any]:
    if isinstance(args, tuple):
        return list(args)
    if isinstance(args, Mapping):
        return list(args.values())
    return [args]


def _replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    occurrences = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * max(len(new) - len(old), 0)


def _join_size(separator: Any, items: List[Any]) -> int:
    total = max(len(items) - 1, 0) * len(separator)
    for item in items:
        total += _text_size(item)
        if total > MAX_OUTPUT_CHARS:
            break
    return total


# ---------------------------------------------------------------------------------------------
# Checks before an operation runs.


def _check_binop(op: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "*":
        if ints:
            _check_bits(left.bit_length() + right.bit_length(), "'*'")
        elif isinstance(right, int) and isinstance(left, _TEXT + _CONTAINERS):
            _check_size(_stored_size(left) * max(right, 0), "'*'")
        elif isinstance(left, int) and isinstance(right, _TEXT + _CONTAINERS):
            _check_size(_stored_size(right) * max(left, 0), "'*'")
    elif op == "**":
        if ints and right > 0 and abs(left) > 1:
            _check_bits(left.bit_length() * right, "'**'")
    elif op in ("+", "-"):
        if ints:
            _check_bits(max(left.bit_length(), right.bit_length()) + 1, f"'{op}'")
        elif op == "+":
            _check_size(_stored_size(left) + _stored_size(right), "'+'")
    elif op == "%" and isinstance(left, str):
        _check_size(_format_size(left, _percent_values(right), "%"), "'%' formatting")


def _check_method_call(obj: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Any, ...]:
    """Check a call of a method of a string or an integer whose result may dwarf its operands.
    Returns the arguments to call it with (``join``'s iterable, turned into a list once)."""
    method = getattr(obj, "__name__", None)
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, _TEXT):
        if method in ("center", "ljust", "rjust", "zfill"):
            width = args[0] if args else kwargs.get("width", 0)
            _check_size(width if isinstance(width, int) else 0, f"str.{method}")
        elif method == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tabsize, int):
                _check_size(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize,
                            "str.expandtabs")
        elif method == "replace" and len(args) >= 2 and isinstance(args[0], _TEXT) and isinstance(args[1], _TEXT):
            _check_size(_replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1)),
                        "str.replace")
        elif method == "join" and args:
            items = list(args[0])
            _check_size(_join_size(owner, items), "str.join")
            return (items,) + args[1:]
    elif isinstance(owner, int) and method == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        _check_size(length if isinstance(length, int) else 0, "int.to_bytes")
    return args


# ---------------------------------------------------------------------------------------------
# Filters: every filter is wrapped so that it counts against the deadline and the budget, and
# never runs at compile time (a context filter is not constant-folded).

FilterCheck = Callable[..., None]


def _stringified(factor: int) -> FilterCheck:
    """For filters that turn their input into text (and may grow it ``factor`` times: escaping
    one character can give six, percent-encoding twelve)."""

    def check(value: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(value, str):
            _check_size(factor * _text_size(value), "turning a value into text")

    return check


def _check_center(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> None:
    _check_size(max(_text_size(value), width if isinstance(width, int) else 0), "center")


def _check_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    size = _text_size(value)
    lines = value.count("\n") + 1 if isinstance(value, str) else size
    _check_size(size + lines * _indent_width(width), "indent")


def _check_replace(value: Any, old: Any = "", new: Any = "", count: Any = None, *args: Any, **kwargs: Any) -> None:
    _check_size(_text_size(value), "replace")
    _check_size(_replace_size(str(value), str(old), str(new), -1 if count is None else count), "replace")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_size(_text_size(value), "format")
    _check_size(_format_size(str(value), list(kwargs.values()) or list(args), "%"), "format")


def _check_tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
                  *args: Any, **kwargs: Any) -> None:
    width = _indent_width(indent)
    separator_chars = 0
    if isinstance(separators, (tuple, list)):
        separator_chars = sum(len(s) for s in separators if isinstance(s, str))
    items = _text_size(value, indent=width + separator_chars, top_char_cost=_NESTED_CHAR_COST)
    _check_size(items, "tojson")


def _check_count_argument(name: str) -> FilterCheck:
    """``batch(n)``, ``slice(n)``: the count becomes a list of that many items."""

    def check(value: Any, count: Any = 1, *args: Any, **kwargs: Any) -> None:
        _check_size(4 * count if isinstance(count, int) else 0, name)

    return check


_FILTER_CHECKS: Dict[str, FilterCheck] = {
    "center": _check_center,
    "indent": _check_indent,
    "replace": _check_replace,
    "format": _check_format,
    "tojson": _check_tojson,
    "batch": _check_count_argument("batch"),
    "slice": _check_count_argument("slice"),
    **{name: _stringified(6) for name in ("e", "escape", "forceescape", "xmlattr")},
    **{name: _stringified(12) for name in ("urlencode",)},
    **{name: _stringified(3) for name in ("capitalize", "lower", "upper", "title", "trim", "truncate",
                                           "string", "safe", "wordcount", "striptags")},
}

#: Not offered: their cost cannot be bounded by their input's size, and chat prompts need none.
_REMOVED_FILTERS = ("wordwrap", "urlize", "pprint")


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators: Optional[Tuple[str, str]] = None, sort_keys: bool = False) -> str:
    # Plain JSON, as Hugging Face renders it (Jinja's own filter HTML-escapes <, >, & and ').
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@pass_environment
def _join(environment: "BoundedSandbox", value: Iterable[Any], d: Any = "", attribute: Any = None) -> str:
    """The ``join`` filter, checked: the items are listed once and measured before joining."""
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    items = list(value)
    separator = str(d)
    _check_size(_join_size(separator, items), "join")
    return separator.join(map(str, items))


@pass_environment
def _sum(environment: "BoundedSandbox", iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    """The ``sum`` filter one ``+`` at a time, each checked: the built-in sum of lists copies
    quadratically in one uninterruptible call."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        total = environment.call_binop(None, "+", total, item)  # type: ignore[arg-type]
    return total


def _bounded_filter(func: Callable[..., Any], check: Optional[FilterCheck]) -> Callable[..., Any]:
    pass_arg = getattr(getattr(func, "jinja_pass_arg", None), "name", None)

    @pass_context
    def bounded(context: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        if check is not None and args:
            check(*args, **kwargs)
        if pass_arg == "context":
            result = func(context, *args, **kwargs)
        elif pass_arg == "eval_context":
            result = func(context.eval_ctx, *args, **kwargs)
        elif pass_arg == "environment":
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        return budget.charge(result)

    bounded.__name__ = getattr(func, "__name__", "filter")
    return bounded


# ---------------------------------------------------------------------------------------------
# Globals.


def _raise_exception(message: Any) -> NoReturn:
    text = str(message) if _text_size(message) <= 4000 else "(a message too long to show)"
    raise ChatTemplateError(f"chat template: {text[:1000]}")


def _strftime_now(fmt: Any) -> str:
    _check_size(64 * _text_size(fmt), "strftime_now")
    return datetime.now().strftime(fmt)


# ---------------------------------------------------------------------------------------------
# Code generation: loop checks and a bounded ``~``.


def _checkpoint(lineno: int) -> nodes.ExprStmt:
    """The statement inserted at the top of every loop and macro body: checks the deadline.
    (Jinja2 allows no new node types; template syntax never produces this pair of nodes.)"""
    return nodes.ExprStmt(nodes.EnvironmentAttribute("checkpoint"), lineno=lineno)


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``~`` to a checked join, and puts a deadline check at the top of every loop body,
    macro and call block, so that even a loop whose body calls nothing can be stopped."""

    def visit_Template(self, node: nodes.Template, frame: Optional[Frame] = None) -> None:
        for block in list(node.find_all((nodes.For, nodes.Macro, nodes.CallBlock))):
            block.body.insert(0, _checkpoint(block.lineno))
        super().visit_Template(node, frame)

    def visit_ExprStmt(self, node: nodes.ExprStmt, frame: Frame) -> None:
        if isinstance(node.node, nodes.EnvironmentAttribute) and node.node.name == "checkpoint":
            self.writeline("environment.checkpoint()", node)
        else:
            super().visit_ExprStmt(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_text((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}`` marks the assistant's part in training templates;
    for rendering it is transparent."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable Jinja2 sandbox with the checks described in this module's docstring, and
    what Hugging Face chat templates expect: ``raise_exception``, ``strftime_now``, a ``tojson``
    that keeps non-ASCII text, loop controls, ``{% generation %}``, trimmed blocks."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationBlock],
                         finalize=_text_for_output)
        self.concat = _bounded_concat  # type: ignore[assignment]  # joins macro and block output
        self.globals.pop("lipsum", None)
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        filters = dict(self.filters, tojson=_tojson, join=_join, sum=_sum)
        for name in _REMOVED_FILTERS:
            filters.pop(name, None)
        self.filters = {name: _bounded_filter(func, _FILTER_CHECKS.get(name)) for name, func in filters.items()}

    @staticmethod
    def checkpoint() -> None:
        _budget().tick()

    @staticmethod
    def join_text(parts: Tuple[Any, ...]) -> str:
        """``a ~ b``: each part as text, measured before it is built."""
        budget = _budget()
        budget.tick()
        _check_size(sum(_text_size(p) for p in parts), "'~'")
        return budget.charge("".join(p if isinstance(p, str) else str(p) for p in parts))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, _TEXT) and attr in ("translate", "maketrans"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Optional[Callable[..., str]]:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        is_format_map = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if is_format_map and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            else:
                values = list(args) + list(kwargs.values())
            _check_size(_format_size(fmt, values, "{"), "str.format")
            return wrapped(*args, **kwargs)

        return bounded_format

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        if operator == "+" and type(left) is str and type(right) is str:
            # The common case, checked after the fact: both operands are within the limits
            # already, so the sum is at most twice as large.
            return budget.charge(left + right)
        _check_binop(operator, left, right)
        return budget.charge(self.binop_table[operator](left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        budget = _budget()
        budget.tick()
        args = _check_method_call(obj, args, kwargs)
        budget.depth += 1
        try:
            if budget.depth > MAX_CALL_DEPTH:
                budget.fail(f"calls nested deeper than {MAX_CALL_DEPTH} (a macro that calls itself without end?)")
            result = super().call(context, obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return budget.charge(result)


def _text_for_output(value: Any) -> Any:
    """``{{ value }}``: a list or dict is measured before it is turned into text."""
    if not isinstance(value, str):
        _check_size(_text_size(value), "printing a value")
    return value


def _bounded_concat(parts: Iterable[str]) -> str:
    """The body of a macro, a ``{% set %}`` block or a filter block, joined once measured."""
    budget = _budget()
    budget.tick()
    parts = parts if isinstance(parts, list) else list(parts)
    _check_size(sum(map(len, parts)), "a block's output")
    return budget.charge("".join(parts))


# ---------------------------------------------------------------------------------------------
# Entry points.


def parse_template(source: Any):
    """Compile a chat template in a :class:`BoundedSandbox`. Raises :class:`ChatTemplateError`
    for a non-string, a source longer than :data:`MAX_TEMPLATE_CHARS`, or any parse failure."""
    if not isinstance(source, str):
        raise ChatTemplateError(f"the chat template must be a string, got {type(source).__name__}")
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(f"the chat template has {len(source):,} characters; the limit is "
                                f"{MAX_TEMPLATE_CHARS:,}")
    try:
        return BoundedSandbox().from_string(source)
    except TemplateError as exc:
        raise ChatTemplateError(f"cannot parse the chat template: {exc}") from exc
    except RecursionError:
        raise ChatTemplateError("cannot parse the chat template: it nests too deeply") from None
    except MemoryError:
        raise ChatTemplateError("cannot parse the chat template: out of memory") from None
    except Exception as exc:  # the compiler's own errors (e.g. a number literal too long for int)
        raise ChatTemplateError(f"cannot parse the chat template: {type(exc).__name__}: {_shorten(exc)}") from exc


def render_template(template, variables: Dict[str, Any]) -> str:
    """Render a template from :func:`parse_template` with ``variables``, within the limits.
    Every failure raises :class:`ChatTemplateError`, whose message names the cause."""
    budget = _RenderBudget()
    token = _ACTIVE_BUDGET.set(budget)
    try:
        return _render_output(template, variables, budget)
    except ChatTemplateError:
        raise
    except Exception as exc:
        if budget.failure is not None:  # a limit error that template code turned into another
            raise ChatTemplateError(f"chat template: {budget.failure}") from exc
        raise ChatTemplateError(_render_failure(exc)) from exc
    finally:
        _ACTIVE_BUDGET.reset(token)


def _render_output(template, variables: Dict[str, Any], budget: _RenderBudget) -> str:
    parts: List[str] = []
    size = 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            budget.fail(f"the rendered prompt exceeds {MAX_OUTPUT_CHARS:,} characters")
        budget.tick()
        parts.append(chunk)
    if budget.failure is not None:
        budget.fail(budget.failure)
    return "".join(parts)


def _render_failure(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "the chat template failed to render: it recursed too deeply"
    if isinstance(exc, MemoryError):
        return "the chat template failed to render: out of memory"
    if isinstance(exc, TemplateError):
        return f"the chat template failed to render: {_shorten(exc)}"
    return f"the chat template failed to render: {type(exc).__name__}: {_shorten(exc)}"


def _shorten(exc: BaseException, limit: int = 500) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."
