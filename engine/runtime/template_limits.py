"""How much a flow's template may make: the sandbox that bounds size and work.

Jinja2's sandbox keeps a template from reaching Python's internals, not from asking for a
gigabyte: `{{ 'x' * 10**9 }}`, `{{ 'x'|center(10**9) }}` or nested loops over `range(99999)`
would take a server process's memory or a webhook's time. `LimitedEnvironment` refuses them
with a `TemplateLimitError` (a Jinja2 `SecurityError`), which the runtime counts as any other
template failure (`engine.runtime.context.TemplateFailure`). The limits, per render of one text
field or condition:

- `MAX_OUTPUT` characters of output, and of every value made on the way (a string, a list: its
  items and theirs, counted deep), refused *before* it is made where an operator or function
  could multiply it (`*`, `**`, `%` and `format` widths, `center`, `ljust`, `replace`, `join`,
  `indent`, `wordwrap`, `batch`, `slice`, `sum`, `lipsum` ...), checked right after otherwise;
- `MAX_STEPS` loop iterations and function or macro calls together, and no `range` longer than
  that;
- integers of at most `MAX_INT_BITS` bits out of `*` and `**`.

The budget is kept per render in a context variable (`begin`, `end`); outside one, each loop and
each value is still bounded on its own.
"""

from __future__ import annotations

import contextvars
import inspect
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OUTPUT = 32_768
"""Characters a template may produce, and the size of any value it makes (a spoken text is at
most 4 096 characters for Twilio; a system prompt a few thousand)."""
MAX_STEPS = 10_000
"""Loop iterations plus calls (helpers, methods, macros) in one render."""
MAX_INT_BITS = 4_096
"""Bits of an integer `*` or `**` may make (about 1 200 decimal digits)."""
MAX_JSON_INDENT = 16

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


class TemplateLimitError(SecurityError):
    """A template asked for more than the limits of this module allow."""


class Budget:
    """The steps (loop iterations and calls) one render has left."""

    def __init__(self, steps: int = MAX_STEPS) -> None:
        self.left = steps

    def charge(self, steps: int = 1) -> None:
        """Spend `steps`; TemplateLimitError once the render has used `MAX_STEPS`."""
        self.left -= steps
        if self.left < 0:
            raise TemplateLimitError(f"the template takes over {MAX_STEPS} loop iterations "
                                     f"and calls")


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "phoney_template_budget", default=None)


def begin() -> contextvars.Token[Budget | None]:
    """Start a fresh budget for one render; hand the token to `end` when it is over. (Two
    plain calls, not a context manager: a short text renders in a few microseconds.)"""
    return _budget.set(Budget())


def end(token: contextvars.Token[Budget | None]) -> None:
    """End the render's budget that `begin` started."""
    _budget.reset(token)


def _charge(steps: int = 1) -> None:
    found = _budget.get()
    if found is not None:
        found.charge(steps)


# -- sizes ------------------------------------------------------------------------------------

def size(value: Any, limit: int = MAX_OUTPUT) -> int:
    """How big `value` is: a string's or bytes' length; a list's, tuple's, set's or dict's
    length plus its items' sizes (deep). Stops counting once past `limit`, so it costs at most
    that much work; anything else counts 0."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | set | frozenset | dict):
        return 0
    total = len(value)
    items: Iterable[Any] = (*value.keys(), *value.values()) if isinstance(value, dict) \
        else value
    for item in items:
        if total > limit:
            break
        total += size(item, limit - total)
    return total


def bounded(value: Any) -> Any:
    """`value`, unless it is over `MAX_OUTPUT` (TemplateLimitError)."""
    if size(value) > MAX_OUTPUT:
        raise TemplateLimitError(f"the template makes a value of over {MAX_OUTPUT} characters "
                                 f"or items (the most a template may produce)")
    return value


def _refuse_over(amount: int, what: str) -> None:
    if amount > MAX_OUTPUT:
        raise TemplateLimitError(f"{what} would make {amount} characters or items; a template "
                                 f"may produce at most {MAX_OUTPUT}")


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# -- operators --------------------------------------------------------------------------------

def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` when its result would be over the limits."""
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
                _refuse_over(size(sequence) * max(0, times), "a repetition with *")
        if _whole(left) and _whole(right) and \
                abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"a product of over {MAX_INT_BITS} bits")
    elif operator == "**" and _whole(left) and _whole(right) > 0 and abs(left) > 1 \
            and abs(left).bit_length() * right > MAX_INT_BITS:
        raise TemplateLimitError(f"a power of over {MAX_INT_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left)


def check_percent_format(text: str) -> None:
    """Refuse a `%` format whose widths or precisions are computed (`*`) or over the limit."""
    for match in _PERCENT_SPEC.finditer(text):
        for part in match.groups():
            if part == "*":
                raise TemplateLimitError("a % format with a computed width (*)")
            if part:
                _refuse_over(int(part), "a % format width")


def check_brace_format(text: str) -> None:
    """Refuse a `str.format` text whose specs are computed (`{:{}}`) or over the limit."""
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        return  # str.format raises it again, as a template error
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise TemplateLimitError("a format with a computed width ({:{}})")
        for number in _NUMBER.findall(spec or ""):
            _refuse_over(int(number), "a format width")


# -- calls: methods, globals --------------------------------------------------------------------

def _lines(text: str) -> int:
    return text.count("\n") + 1


def _replaced(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _joined(separator: Any, items: Any) -> int:
    if not isinstance(items, list | tuple | range):
        return 0  # an iterator: its result is checked once made
    length = len(separator) if isinstance(separator, str) else 1
    return sum(size(item) if isinstance(item, str) else 8 for item in items) \
        + length * max(0, len(items) - 1)


def _translated(text: str, table: Any) -> int:
    if not isinstance(table, dict):
        return len(text)
    longest = max((len(value) for value in table.values() if isinstance(value, str)),
                  default=1)
    return len(text) * max(1, longest)


_METHODS: dict[str, Callable[..., int]] = {
    "center": lambda text, width=0, *rest: max(len(text), _whole(width)),
    "ljust": lambda text, width=0, *rest: max(len(text), _whole(width)),
    "rjust": lambda text, width=0, *rest: max(len(text), _whole(width)),
    "zfill": lambda text, width=0: max(len(text), _whole(width)),
    "expandtabs": lambda text, tabsize=8: len(text) + text.count("\t") * _whole(tabsize),
    "replace": _replaced,
    "join": _joined,
    "translate": _translated,
}
"""A str method's result size, from the string and the call's arguments."""


def check_call(function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a call that would make a value over the limits, before it runs."""
    target = getattr(function, "__wrapped__", function)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if isinstance(owner, str):
        if name in ("format", "format_map"):
            check_brace_format(owner)
        elif name in _METHODS:
            try:
                estimate = _METHODS[name](owner, *args, **kwargs)
            except TypeError:
                return  # wrong arguments: the call itself raises
            _refuse_over(estimate, f"str.{name}")
    elif name == "generate_lorem_ipsum":  # the `lipsum` global
        _refuse_over(sum(_whole(value) for value in (*args, *kwargs.values())) * 10, "lipsum")


def limited_range(*args: int) -> range:
    """`range` for templates: at most `MAX_STEPS` numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_STEPS:
        raise TemplateLimitError(f"range of {len(numbers)} numbers; at most {MAX_STEPS}")
    return numbers


def iterate(items: Any) -> Iterator[Any]:
    """What a template's `for` loop goes over: `items`, one budget step each."""
    found = _budget.get() or Budget()  # outside a render: this loop's own
    for item in items:
        found.left -= 1
        if found.left < 0:
            raise TemplateLimitError(f"the template takes over {MAX_STEPS} loop iterations "
                                     f"and calls")
        yield item


# -- filters ------------------------------------------------------------------------------------

_FILTERS: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "center": lambda a: max(size(a.get("value")), _whole(a.get("width", 80))),
    "indent": lambda a: size(a.get("s")) + _lines(str(a.get("s"))) * (
        len(width) if isinstance(width := a.get("width", 4), str) else _whole(width)),
    "replace": lambda a: _replaced(str(a.get("s")), a.get("old"), a.get("new"),
                                   a.get("count") if a.get("count") is not None else -1),
    "join": lambda a: _joined(a.get("d", ""), a.get("value")),
    "wordwrap": lambda a: size(a.get("s")) + (size(a.get("s")) // max(1, _whole(
        a.get("width", 79))) + 1) * len(str(a.get("wrapstring") or "\n")),
    "batch": lambda a: _whole(a.get("linecount")),
    "slice": lambda a: _whole(a.get("slices")),
    "sum": lambda a: 0 if isinstance(a.get("start", 0), int | float)
    else _joined("", list(a.get("iterable") or ())),
}
"""A filter's result size, from its bound arguments (by the names Jinja2 gives them)."""


def _limited_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` (a Jinja2 filter) refused when its result would be over the limits, and its
    result checked when made."""
    estimate = _FILTERS.get(name)
    signature = inspect.signature(function) if estimate or name in ("format", "tojson") \
        else None  # the others make at most what they are given: their result is checked

    def limited(*args: Any, **kwargs: Any) -> Any:
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs).arguments
            except TypeError:
                bound = None  # wrong arguments: the filter itself raises
            if bound is not None:
                if estimate is not None:
                    _refuse_over(estimate(bound), f"the {name} filter")
                elif name == "format" and isinstance(bound.get("value"), str):
                    check_percent_format(bound["value"])
                elif name == "tojson":
                    indent = bound.get("indent")
                    if size(indent) > MAX_JSON_INDENT or _whole(indent) > MAX_JSON_INDENT:
                        raise TemplateLimitError(f"tojson indent over {MAX_JSON_INDENT}")
        return bounded(function(*args, **kwargs))

    # Jinja2 reads how to call a filter (pass_context ...) from its attributes: keep them.
    limited.__dict__.update(getattr(function, "__dict__", {}))
    limited.__name__ = getattr(function, "__name__", name)
    limited.__doc__ = function.__doc__
    return limited


# -- the environment ------------------------------------------------------------------------------

class _Wrap(NodeTransformer):
    """Every `for` loop's iterable through `iterate`, every `~` result through `bounded`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("phoney_iterate", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("phoney_bounded", node)


def _call(attribute: str, argument: nodes.Node) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(attribute), [cast(nodes.Expr, argument)], [],
                      None, None, lineno=argument.lineno)


class _LimitedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Wrap().visit(node)
        super().visit_Template(node, frame)


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the limits of this module (see its docstring). Every
    `{{ ... }}` value is bounded as it is output; `render_limited` bounds the whole output."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    # Intercepted operators are also never folded into constants when a template is compiled,
    # so `'x' * 10**9` in a flow costs nothing to load: it fails when (if ever) rendered.
    code_generator_class = _LimitedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=bounded, **options)
        self.globals["range"] = limited_range
        self.filters = {name: _limited_filter(name, function)
                        for name, function in self.filters.items()}
        self.phoney_iterate = iterate
        self.phoney_bounded = bounded

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """The operator, refused when its result would be over the limits."""
        check_binop(operator, left, right)
        return bounded(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from a template: one budget step, refused when its result would be over
        the limits, and its result checked."""
        if __obj is iterate:  # a loop (see `_Wrap`): its iterations are charged one by one
            return iterate(*args)
        _charge()
        check_call(__obj, args, kwargs)
        return bounded(super().call(__context, __obj, *args, **kwargs))


def render_limited(pieces: Iterable[str]) -> str:
    """A render's output pieces joined, refused once they pass `MAX_OUTPUT` characters."""
    out: list[str] = []
    add = out.append
    left = MAX_OUTPUT
    for piece in pieces:
        left -= len(piece)
        if left < 0:
            raise TemplateLimitError(f"the template's output is over {MAX_OUTPUT} characters "
                                     f"(the most a template may produce)")
        add(piece)
    return "".join(out)
