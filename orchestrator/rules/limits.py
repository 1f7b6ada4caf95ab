"""The limits on one template render: its Budget, and how big a value is, or would be, before it is built.

Every render of a rule's template runs inside `render_budget()`. The sandbox (sandbox.py) charges each loop
iteration and each call to the budget, which also holds the render's deadline, and asks the functions here
how large the result of an operation would be *before* running it, so that one hostile event cannot make
a template allocate gigabytes or spin for hours. The budget lives in a ContextVar: renders in different
threads or asyncio tasks each have their own.

Sizes are in characters of the value's text (str() for a string, about str() or JSON for a container),
counting a part shared inside a structure each time it appears: a list that holds itself 2**40 times over
is small in memory but not once it is turned into text, compared or serialized.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2.utils import Namespace

from ..errors import RuleError

__all__ = [
    "HINT",
    "MAX_CALL_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITERATIONS",
    "MAX_NEW_CHARS",
    "MAX_RENDER_S",
    "MAX_VALUE_CHARS",
    "Budget",
    "active_budget",
    "check_binop",
    "check_measured",
    "check_new",
    "check_size",
    "check_time",
    "format_spec_size",
    "joined_size",
    "measure",
    "printf_size",
    "remember",
    "render_budget",
    "replaced_size",
    "to_int",
]

# A rule's templates render on the engine's path for every event, in microseconds when they are sane;
# these limits are orders of magnitude above that, and low enough that a hostile event costs one worker
# a quarter of a second and a few MiB at most.
MAX_RENDER_S = 0.25
MAX_ITERATIONS = 100_000  # loop iterations plus calls per render; Jinja's own range() limit
MAX_VALUE_CHARS = 256 * 1024  # any value a template builds; 4x the final MAX_RENDERED_BYTES
MAX_NEW_CHARS = 16 * MAX_VALUE_CHARS  # all the text one render builds, kept or not (`items|map('center', n)`)
MAX_INT_BITS = 4096  # integers built by `*` and `**`; about 1,233 decimal digits
MAX_CALL_DEPTH = 64  # nested macro calls and recursive loops, well inside Python's recursion limit

HINT = "render less data, or do this work in a task"

_REMEMBERED_VALUES = 32  # sizes of the latest containers measured, so `ns.xs + [x]` in a loop stays O(1)
_CHECK_TIME_EVERY = 4096  # nodes measured between two looks at the clock
_CHECK_TIME_EVERY_TICKS = 16  # attribute lookups, operators and filters between two looks at the clock


@dataclass
class Budget:
    """What is left of one render (deadline on the time.monotonic() clock, steps, call depth), and the
    sizes of the last containers it built."""

    deadline_s: float
    steps_left: int = MAX_ITERATIONS
    depth: int = 0
    ticks: int = 0
    new_chars: int = 0
    sizes: dict[int, tuple[object, int]] = field(default_factory=dict)

    def step(self) -> None:
        """Charge one loop iteration or call, and check the deadline."""
        self.steps_left -= 1
        if self.steps_left < 0:
            raise RuleError(f"the template ran more than {MAX_ITERATIONS} loop iterations and calls, "
                            f"the limit per render; {HINT}")
        self.check_time()

    def charge(self, chars: int) -> None:
        """Count new text just built. Each value is bounded on its own; this bounds them together, so
        that many new values cannot pile up in one list (`range(1000)|map('center', 200000)|list`)."""
        self.new_chars += chars
        if self.new_chars > MAX_NEW_CHARS:
            raise RuleError(f"the template built more than {MAX_NEW_CHARS} characters of new values, "
                            f"the limit per render; {HINT}")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline_s:
            raise RuleError(f"the template ran longer than {MAX_RENDER_S} s, the limit per render; {HINT}")


_BUDGET: ContextVar[Budget | None] = ContextVar("orch_template_budget", default=None)


@contextmanager
def render_budget() -> Iterator[Budget]:
    """The budget of the render in progress, or a new one; nested renders share the outermost budget."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    budget = Budget(deadline_s=time.monotonic() + MAX_RENDER_S)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def active_budget() -> Budget:
    """The budget of the render in progress; templates render only inside `render_budget()`."""
    budget = _BUDGET.get()
    if budget is None:
        raise RuntimeError("an orch template was rendered outside render_budget()")
    return budget


def check_time() -> None:
    """Check the deadline if a render is in progress (Jinja also folds constants while compiling)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.ticks += 1
        if budget.ticks % _CHECK_TIME_EVERY_TICKS == 0:
            budget.check_time()


def remember(value: object, size: int | None) -> None:
    """Note the size of a container just built, so measuring it again later costs nothing."""
    budget = _BUDGET.get()
    if budget is None or size is None or not isinstance(value, list | tuple | dict):
        return
    if len(budget.sizes) >= _REMEMBERED_VALUES:
        del budget.sizes[next(iter(budget.sizes))]
    budget.sizes[id(value)] = (value, size)


def _own_size(item: Any, depth: int, indent: int) -> tuple[int, Any]:
    """The characters `item` adds by itself, and what it holds (to measure next)."""
    if isinstance(item, str):
        return len(item) + 2, ()
    if isinstance(item, bytes):
        return 4 * len(item) + 3, ()
    if isinstance(item, bool) or item is None:
        return 5, ()
    if isinstance(item, int):
        return item.bit_length() * 3 // 10 + 2, ()
    if isinstance(item, Namespace):
        item = item._Namespace__attrs  # private to Jinja; its repr shows them all
    per_item = 2 + indent * (depth + 1)
    if isinstance(item, Mapping):
        return 2 + len(item) * (per_item + 2), item.items()
    if isinstance(item, list | tuple | set | frozenset):
        return 2 + len(item) * per_item, item
    return 24, ()  # a float, a range, a generator, a macro...: short, whatever its contents


def measure(value: Any, limit: int = MAX_VALUE_CHARS, indent: int = 0) -> int:
    """About how many characters `value` is as text; counting stops once it passes `limit`.

    `indent` adds that many characters per level of nesting to each item (JSON with an indent). The cost
    is O(limit) at worst, whatever the value, and nearly nothing for a container built (and measured)
    earlier in the same render.
    """
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, int | float):
        return _own_size(value, 0, 0)[0]
    budget = _BUDGET.get()
    known = budget.sizes if budget is not None and indent == 0 else {}
    total, visited = 0, 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= limit:
        item, depth = stack.pop()
        seen = known.get(id(item))
        if seen is not None and seen[0] is item:
            total += seen[1]
            continue
        size, inside = _own_size(item, depth, indent)
        total += size
        if total <= limit:
            stack.extend((part, depth + 1) for part in inside)
        visited += 1
        if budget is not None and visited % _CHECK_TIME_EVERY == 0:
            budget.check_time()
    if total <= limit and indent == 0:
        remember(value, total)
    return total


def check_size(what: str, size: int, limit: int = MAX_VALUE_CHARS) -> int:
    """`size` if it is within `limit`; otherwise RuleError saying `what` would be too large."""
    if size > limit:
        raise RuleError(f"{what} would be {size} characters, over the limit of {limit}; {HINT}")
    return size


def check_new(what: str, size: int) -> int:
    """As `check_size`, for a value about to be built: also charged to the render's MAX_NEW_CHARS."""
    check_size(what, size)
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(size)
    return size


def check_measured(what: str, value: Any, indent: int = 0) -> int:
    """The size of `value` (see `measure`); RuleError if it is over MAX_VALUE_CHARS."""
    size = measure(value, MAX_VALUE_CHARS, indent)
    if size > MAX_VALUE_CHARS:
        raise RuleError(f"{what} would be over the limit of {MAX_VALUE_CHARS} characters; {HINT}")
    return size


def to_int(value: Any) -> int:
    """An integer argument as given, or 0 when it is not one (the real call then raises its own error)."""
    return value if isinstance(value, int) else 0


def _product_size(left: Any, right: Any) -> int | None:
    if isinstance(left, int) and not isinstance(right, int):
        left, right = right, left  # `3 * 'ab'`
    if not isinstance(right, int):
        return None
    if isinstance(left, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise RuleError(f"the result of `*` would have {bits} bits, over the limit of {MAX_INT_BITS}; {HINT}")
        return None
    if isinstance(left, str | bytes):
        return check_new("the result of `*`", len(left) * max(right, 0))
    if isinstance(left, list | tuple):  # new references only: the items are counted where they were built
        return check_size("the result of `*`", (measure(left) if left else 0) * max(right, 0))
    return None


def _power_bits(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = math.log2(abs(base)) * exponent
        if bits > MAX_INT_BITS:
            raise RuleError(f"the result of `**` would have about {int(bits)} bits, "
                            f"over the limit of {MAX_INT_BITS}; {HINT}")


def check_binop(operator: str, left: Any, right: Any) -> int | None:
    """Raise RuleError if `left <operator> right` would be too large; its size when it is a sequence."""
    if operator == "*":
        return _product_size(left, right)
    if operator == "**":
        _power_bits(left, right)
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            return check_new("the result of `+`", len(left) + len(right))
        if isinstance(left, list | tuple) and isinstance(right, list | tuple):
            return check_size("the result of `+`", measure(left) + measure(right))
    elif operator == "%" and isinstance(left, str):
        check_new("the result of `%`", printf_size(left, right))
    return None


_PRINTF = re.compile(r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?"
                     r"[hlL]?(?P<kind>.)", re.DOTALL)


def _digits(run: str) -> int:
    significant = run.lstrip("0")
    return int(significant or "0") if len(significant) < 10 else MAX_VALUE_CHARS + 1


def _printf_number(spec: str | None, queue: list[Any]) -> int:
    if spec is None:
        return 0
    if spec == "*":  # the width or precision is the next argument
        taken = queue.pop(0) if queue else 0
        return abs(taken) if isinstance(taken, int) else 0
    return _digits(spec)


def printf_size(template: str, values: Any) -> int:
    """About how long `template % values` would be: its text, each field's width or precision, each value."""
    queue = list(values) if isinstance(values, tuple) else [values]
    size = len(template)
    for spec in _PRINTF.finditer(template):
        if spec["kind"] == "%":
            continue
        width = _printf_number(spec["width"], queue)
        precision = _printf_number(spec["precision"], queue)
        if spec["key"] is not None and isinstance(values, Mapping):
            value = values.get(spec["key"])
        else:
            value = queue.pop(0) if queue else None
        size += max(width, precision) + measure(value)
        if size > MAX_VALUE_CHARS:
            break
    return size


def format_spec_size(spec: str) -> int:
    """The largest width or precision in a str.format() spec such as `>1000` or `.3f`."""
    return max((_digits(run) for run in re.findall(r"\d+", spec)), default=0)


def replaced_size(text: str | bytes, old: Any, new: Any, count: int = -1) -> int:
    """The length of `text.replace(old, new, count)`; an empty `old` matches at len(text) + 1 places."""
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes) or len(new) <= len(old):
        return len(text)
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def joined_size(separator: Any, items: list[Any]) -> int:
    """About how long `separator.join(items)` would be; stops counting once past MAX_VALUE_CHARS."""
    size = max(len(items) - 1, 0) * measure(separator)
    for item in items:
        if size > MAX_VALUE_CHARS:
            break
        size += measure(item)
    return size
