"""③ Template rendering is bounded while it runs: a hostile event fails its rule, it never takes the engine down.

Each bomb below would allocate gigabytes or run for hours if it ran; each must fail with a RuleError that
names the parameter and the limit, without the process's peak memory growing. The time bound is proven by
the loop bombs finishing at all (under pytest's timeout): no test asserts on elapsed time.
"""

from __future__ import annotations

import resource
import sys
import threading
from typing import Any

import pytest

from orchestrator.errors import RuleError
from orchestrator.rules import limits
from orchestrator.rules.limits import (
    MAX_ITERATIONS,
    MAX_NEW_CHARS,
    MAX_RENDER_S,
    MAX_VALUE_CHARS,
    Budget,
    render_budget,
)
from orchestrator.rules.sandbox import BoundedSandbox
from orchestrator.rules.templates import ParamsTemplate, TemplateCompileError, compile_condition, render_value

BIG = 1_000_000_000
DATA = {"n": BIG, "s": "ab", "orders": [{"id": i, "to": f"u{i}@example.com"} for i in range(5)]}
MAX_GROWTH_KB = 50 * 1024


@pytest.fixture(autouse=True)
def roomy_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test expects one particular limit to stop its template. The 0.25 s deadline must not get there
    first on a loaded machine, so these tests get 5 s (test_the_deadline_stops_a_render checks the deadline)."""
    monkeypatch.setattr(limits, "MAX_RENDER_S", 5.0)


def peak_rss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def render(template: str, data: Any = None) -> Any:
    event = {"type": "order.created", "source": "/shop", "data": DATA if data is None else data}
    return ParamsTemplate({"big": template}).render({"event": event, "data": event["data"]})["big"]


def render_error(template: str, data: Any = None) -> str:
    before = peak_rss_kb()
    with pytest.raises(RuleError) as caught:
        render(template, data)
    assert peak_rss_kb() - before < MAX_GROWTH_KB, "the render allocated before it was refused"
    return str(caught.value)


@pytest.mark.parametrize(("template", "says"), [
    ("{{ 'x' * data.n }}", "the result of `*` would be 1000000000 characters, over the limit of 262144"),
    ("{{ data.s * data.n }}", "the result of `*` would be 2000000000 characters"),
    ("{{ data.n * data.s }}", "the result of `*` would be 2000000000 characters"),
    ("{{ [1] * data.n }}", "the result of `*`"),
    ("{{ (data.s,) * data.n }}", "the result of `*`"),
    ("{{ 2 ** data.n }}", "the result of `**` would have about 1000000000 bits, over the limit of 4096"),
    ("{{ 'x'|center(data.n) }}", "the result of `center` would be 1000000000 characters"),
    ("{{ 'x'.center(data.n) }}", "the result of `center()`"),
    ("{{ 'x'.ljust(data.n) }}", "the result of `ljust()`"),
    ("{{ 'x'.rjust(data.n) }}", "the result of `rjust()`"),
    ("{{ 'x'.zfill(data.n) }}", "the result of `zfill()`"),
    ("{{ 'a\tb'.expandtabs(data.n) }}", "the result of `expandtabs()`"),
    ("{{ 'abc'.replace('', 'x' * 200000) }}", "the result of `replace()` would be 800003 characters"),
    ("{{ 'abc'|replace('', 'x' * 200000) }}", "the result of `replace` would be 800003 characters"),
    ("{{ ('a' * 1000).translate({97: 'x' * 1000}) }}", "the result of `translate()`"),
    ("{{ ('x' * 1000).join(range(1000)|map('string')) }}", "the result of `join()`"),
    ("{{ range(1000)|join('x' * 1000) }}", "the result of `join`"),
    ("{{ '{:>1000000000}'.format(1) }}", "a width or precision in `format()`"),
    ("{{ '{:>{}}'.format(1, data.n) }}", "a width or precision in `format()`"),
    ("{{ '{:.{}f}'.format(1.5, data.n) }}", "a width or precision in `format()`"),
    ("{{ '{0}{0}{0}{0}'.format('x' * 100000) }}", "the result of `format()`"),
    ("{{ '%01000000000d' % 1 }}", "the result of `%`"),
    ("{{ '%*d' % (1000000000, 1) }}", "the result of `%` would be 1000000005 characters"),
    ("{{ '%.*f' % (data.n, 1.5) }}", "the result of `%`"),
    ("{{ '%0*d'|format(data.n, 1) }}", "the result of `format`"),
    ("{{ 'a\nb'|indent(data.n) }}", "the result of `indent`"),
    ("{{ 'a b c'|wordwrap(1, wrapstring='x' * 200000) }}", "the result of `wordwrap`"),
    ("{{ [1, 2, 3]|batch(data.n, 'x')|list }}", "the fill of `batch`"),
    ("{{ [1, 2, 3]|slice(data.n)|list }}", "`slice` into 1000000000 slices is over the limit of 100000"),
    ("{{ [1]|slice(3, 'x' * 200000)|list }}", "the fill of `slice`"),
    ("{{ {'a': 1}|tojson(indent=data.n) }}", "the result of `tojson`"),
    ("{{ 1 .to_bytes(data.n, 'big') }}", "the result of `to_bytes()`"),
    ("{{ lipsum(data.n) }}", "the result of `lipsum()`"),
    ("{{ range(10**9)|list }}", "range() of 1000000000 items is over the limit of 100000"),
])
def test_a_bomb_fails_before_it_allocates(template: str, says: str) -> None:
    message = render_error(template)

    assert message.startswith(f"params.big: {says}")
    assert message.endswith("; render less data, or do this work in a task")


@pytest.mark.parametrize("template", [
    # A namespace doubling a string, a list, a nested list (small in memory, 2**64 items as text), an int.
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    "{{ ns.s|length }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = ns.x + ns.x %}{% endfor %}"
    "{{ ns.x|length }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
    "{{ ns.x == ns.x }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}"
    "{% set ns.x = [none, none]|map('default', ns.x, true)|list %}"
    "{% endfor %}{{ ns.x }}",
    "{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}",
    # A block that captures ever more text: each chunk is small, what is joined is not.
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set block %}{{ ns.s }}{{ ns.s }}{% endset %}"
    "{% set ns.s = block %}{% endfor %}",
    "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='x') %}"
    "{% for i in range(64) %}{% set ns.s = twice(ns.s) %}{% endfor %}",
])
def test_a_value_that_doubles_in_a_loop_is_stopped(template: str) -> None:
    message = render_error(template)

    assert message.startswith("params.big: ")
    assert "over the limit" in message


XS = {"xs": list(range(100_000))}


@pytest.mark.parametrize(("template", "data"), [
    # Unbounded these run for minutes to centuries: 10**10 iterations, a macro calling itself 2**60 times.
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", None),
    ("{% for i in data.xs %}{% for j in data.xs %}{% endfor %}{% endfor %}", XS),
    ("{% for i in data.xs %}{{ data.xs|sort|length }}{% endfor %}", XS),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}", None),
    ("{% for i in range(100000) %}{% set n = range(100000)|list|length %}{% endfor %}", None),
])
def test_a_loop_that_would_run_for_hours_is_stopped(template: str, data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_RENDER_S", MAX_RENDER_S)  # the real deadline: either limit may stop these
    message = render_error(template, data)

    assert message.startswith("params.big: the template ran ")
    assert (f"more than {MAX_ITERATIONS} loop iterations and calls" in message
            or f"longer than {limits.MAX_RENDER_S} s" in message)


@pytest.mark.parametrize("template", [
    "{{ ('x' * 250000).encode('utf-32').hex() }}",
    "{% set s = data.s * 100000 %}{{ s.encode('utf-32').hex().encode('utf-32').hex()|sort|unique|list }}",
    "{% set ns = namespace(s=data.s) %}{% for i in range(64) %}{% set ns.s = ns.s.upper().encode().hex() %}"
    "{% endfor %}",
    "{{ (data.s * 100000).encode().hex('-') }}",
])
def test_text_from_unpredicted_methods_is_measured_as_soon_as_it_exists(template: str) -> None:
    message = render_error(template)

    assert message.startswith("params.big: the result of `") and "over the limit" in message, message


@pytest.mark.parametrize("template", [
    "{{ 'urgent' in data.body.lower() }}",
    "{{ data.body.strip().upper()|length }}",
    "{{ data.body.encode().decode()|length > 0 }}",
])
def test_a_method_on_large_event_text_that_does_not_grow_it_is_fine(template: str) -> None:
    assert render(template, {"body": "Y" * 300_000}) in (False, True, 300_000)


def test_the_deadline_stops_a_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_RENDER_S", 0.0)  # already past: the first check of the clock stops it

    message = render_error("{% for i in range(50000) %}{% endfor %}done")

    assert message == ("params.big: the template ran longer than 0.0 s, the limit per render; "
                       "render less data, or do this work in a task")
    assert limits.MAX_RENDER_S != MAX_RENDER_S == 0.25, "the real deadline"


def test_a_recursive_macro_is_stopped_by_depth() -> None:
    message = render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")

    assert message.startswith("params.big: calls nested deeper than 64 levels")


def test_a_recursive_loop_is_stopped_by_depth() -> None:
    message = render_error("{% for x in data.tree recursive %}{{ loop([x]) }}{% endfor %}", {"tree": [1]})

    assert message.startswith("params.big: calls nested deeper than 64 levels")


@pytest.mark.parametrize("template", [
    # Each chunk is new and within the limits; kept in a macro's or block's buffer, they would add up to 20 GB.
    "{% macro m() %}{% for i in range(99999) %}{{ 'x' * 200000 }}{% endfor %}{% endmacro %}{{ m()|length }}",
    "{% set b %}{% for i in range(99999) %}{{ 'x' * 200000 }}{% endfor %}{% endset %}{{ b|length }}",
    "{% filter length %}{% for i in range(99999) %}{{ 'x' * 200000 }}{% endfor %}{% endfilter %}",
    "{% macro m() %}{{ caller()|length }}{% endmacro %}"
    "{% call m() %}{% for i in range(99999) %}{{ 'x' * 200000 }}{% endfor %}{% endcall %}",
])
def test_a_macro_or_block_collecting_too_much_text_is_stopped(template: str) -> None:
    message = render_error(template)

    assert message.startswith(f"params.big: the output of a macro or block would be 400000 characters, "
                              f"over the limit of {MAX_VALUE_CHARS}")


@pytest.mark.parametrize("template", [
    # Each new value is within the limits, but a list collects a thousand of them: 200 MB.
    "{{ range(1000)|map('center', 200000)|list|length }}",
    "{{ range(1000)|map('string')|map('format')|map('center', 200000)|join|length }}",
    "{{ ([[1]] * 1000)|map('batch', 80000, 0)|map('list')|list|length }}",
    "{% set ns = namespace(n=0) %}{% for i in range(1000) %}{% set s = 'x' * 200000 %}"
    "{% set ns.n = ns.n + s|length %}{% endfor %}{{ ns.n }}",
])
def test_many_new_values_within_the_limits_are_stopped_together(template: str) -> None:
    message = render_error(template)

    assert message.startswith(f"params.big: the template built more than {MAX_NEW_CHARS} characters of new values")


def test_a_loop_emitting_too_much_text_stops_at_the_output_limit() -> None:
    message = render_error("{% for i in range(100000) %}{{ data.s * 1000 }}{% endfor %}")

    assert message.startswith("params.big: rendered value is over the limit of 65536 bytes (stopped after")


def test_a_large_single_value_is_refused_before_it_is_serialized() -> None:
    data = {"records": [{"id": i, "pad": "x" * 20} for i in range(20_000)]}

    message = render_error("{{ data.records }}", data)

    assert message.startswith(f"params.big: rendered value is more than {MAX_VALUE_CHARS} characters")


def test_a_condition_and_a_single_template_are_bounded_too() -> None:
    context = {"event": {"data": DATA}, "data": DATA}
    with pytest.raises(RuleError, match=r"^condition .*: the result of `\*`"):
        compile_condition("('x' * data.n)|length > 3")(context)
    with pytest.raises(RuleError, match=r"^template: the result of `\*`"):
        render_value("{{ 'x' * data.n }}", context, "template")


def test_the_budget_is_shared_by_all_the_parameters_of_one_render() -> None:
    # Each loop alone fits the budget; together they do not.
    loop = "{% for i in range(60000) %}{% endfor %}"
    template = ParamsTemplate({"a": loop, "b": loop})

    with pytest.raises(RuleError, match=r"^params\.b: the template ran more than"):
        template.render({"data": DATA})
    assert ParamsTemplate({"a": loop}).render({"data": DATA}) == {"a": ""}


def test_each_thread_has_its_own_budget() -> None:
    budgets: list[Budget] = []
    both_inside = threading.Barrier(2)

    def run() -> None:
        with render_budget() as budget:
            both_inside.wait()  # the two renders are in progress at the same time
            budgets.append(budget)

    with render_budget() as outer:
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(budgets) == 2
    assert budgets[0] is not budgets[1]
    assert outer not in budgets


def test_rendering_outside_a_budget_is_a_programming_error() -> None:
    template = BoundedSandbox().from_string("{% for i in range(3) %}{{ i }}{% endfor %}")

    with pytest.raises(RuntimeError, match="outside render_budget"):
        template.render()
    with render_budget():
        assert template.render() == "012"


def test_the_pprint_filter_is_not_available() -> None:
    with pytest.raises(TemplateCompileError, match="pprint"):
        ParamsTemplate({"x": "{{ data|pprint }}"})


# -- Ordinary templates are unaffected.

ORDINARY: list[tuple[str, Any]] = [
    ("{{ event.data.order_id }}", "A-1"),
    ("order {{ event.data.order_id }} from {{ event.source }}", "order A-1 from /shop"),
    ("{{ data.orders | map(attribute='to') | join(', ') }}",
     "u0@example.com, u1@example.com, u2@example.com, u3@example.com, u4@example.com"),
    ("{% for o in data.orders %}{{ o.id }}{% if not loop.last %},{% endif %}{% endfor %}", "0,1,2,3,4"),
    ("{% for o in data.orders if o.id > 2 %}{{ loop.index }}/{{ loop.length }} {% endfor %}", "1/2 2/2 "),
    ("{{ 'ab' * 3 }}", "ababab"),
    ("{{ 3 * 'ab' }}", "ababab"),
    ("{{ range(10)|list }}", list(range(10))),
    ("{{ range(10)|sum }}", 45),
    ("{{ [[1], [2, 3]]|sum(start=[]) }}", [1, 2, 3]),
    ("{{ data.orders|length > 3 }}", True),
    ("{{ 2 ** 10 }}", 1024),
    ("{{ 10 ** 100 > 0 }}", True),
    ("{{ data.total * 100 }}", 4200),
    ("{{ 'id-%05d' % data.total }}", "id-00042"),
    ("{{ '%s/%s'|format('a', 'b') }}", "a/b"),
    ("{{ '{:>6}|{:.2f}'.format('ab', 1.5) }}", "    ab|1.50"),
    ("{{ '{name}!'.format_map({'name': 'Ada'}) }}", "Ada!"),
    ("{{ 'ab'|center(6) }}|{{ 'ab'.ljust(4) }}|{{ '7'.zfill(3) }}", "  ab  |ab  |007"),
    ("{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b'|replace('-', '') }}", "a+b+c ab"),
    ("{{ ', '.join(['a', 'b']) }}", "a, b"),
    ("{{ 'a b c d'|wordwrap(3) }}", "a b\nc d"),
    ("{{ 'a\nb'|indent(2) }}", "a\n  b"),
    ("{{ [1, 2, 3, 4, 5]|batch(2, 0)|list }}", [[1, 2], [3, 4], [5, 0]]),
    ("{{ [1, 2, 3]|slice(2)|list }}", [[1, 2], [3]]),
    ("{{ {'a': [1, 2]}|tojson }}", '{"a": [1, 2]}'),
    ("{{ ('a', 1) ~ '' }}", "('a', 1)"),
    ("{{ data.orders[0] }}", {"id": 0, "to": "u0@example.com"}),
    ("{% set ns = namespace(items=[]) %}{% for o in data.orders %}{% set ns.items = ns.items + [o.id] %}"
     "{% endfor %}{{ ns.items }}", "[0, 1, 2, 3, 4]"),
    ("{% macro tag(x) %}<{{ x }}>{% endmacro %}{{ tag('a') }}{{ tag('b') }}", "<a><b>"),
    ("{% for x in data.tree recursive %}{{ x.n }}{% if x.c %}({{ loop(x.c) }}){% endif %}{% endfor %}",
     "1(2(3))"),
    ("{{ lipsum(1, false, 5, 6)|wordcount }}", 5),
    ("{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}", "aba"),
    ("{{ dict(a=1) }}", {"a": 1}),
]


@pytest.mark.parametrize(("template", "expected"), ORDINARY)
def test_ordinary_templates_render_as_before(template: str, expected: Any) -> None:
    data = {**DATA, "order_id": "A-1", "total": 42, "tree": [{"n": 1, "c": [{"n": 2, "c": [{"n": 3, "c": []}]}]}]}

    assert render(template, data) == expected


def test_the_readme_condition_works() -> None:
    when = compile_condition("results.fetch_orders | length > 1000")

    assert when({"results": {"fetch_orders": list(range(1001))}}) is True
    assert when({"results": {"fetch_orders": [1]}}) is False


def test_a_long_loop_within_the_budget_completes() -> None:
    assert render("{% for i in range(50000) %}{% endfor %}done") == "done"


def test_event_data_larger_than_the_output_limit_can_still_be_reduced() -> None:
    data = {"records": [{"id": i, "ok": i % 2 == 0, "pad": "x" * 20} for i in range(20000)]}  # ~900 kB

    assert render("{{ data.records|selectattr('ok')|list|length }}", data) == 10000
    assert render("{{ data.records|map(attribute='id')|max }}", data) == 19999
