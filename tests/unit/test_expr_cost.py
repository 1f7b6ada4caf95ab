"""The cost limit of CEL expressions (rules/exprcost.py) and the Scope that converts an event once."""

from __future__ import annotations

import pytest

from orchestrator.rules.expr import ExpressionError, Scope, compile_expression
from orchestrator.rules.exprcost import KIB_STEPS, MAX_COST_STEPS, Sizes, cost_model, largest, measure


def _steps(text: str, longest: int) -> int:
    model = cost_model(text)
    assert model is not None
    return model.steps(longest)


def test_an_expression_without_comprehensions_has_no_cost_model() -> None:
    assert cost_model("data.amount > 100.0 && event.source.startsWith('/shop/')") is None
    assert cost_model("'a.map(x, x)' + \"b.exists(\"") is None  # macros inside strings are text


def test_an_exists_over_event_data_costs_one_step_per_possible_element() -> None:
    # R = (1 + pluses) * (longest + tokens): 14 tokens (data . items . exists ( i , i . qty > 2 )), no `+`
    assert _steps("data.items.exists(i, i.qty > 2)", 10) == 10 + 14


def test_map_and_filter_are_priced_quadratically_as_the_library_runs_them() -> None:
    r = 10 + 12
    assert _steps("data.items.map(i, i.qty)", 10) == r + r * (r + 1) // 2


def test_a_literal_range_counts_its_elements_exactly_and_nesting_multiplies() -> None:
    text = "[1, 2, 3].exists(x, data.l.exists(y, y == x))"
    inner = (0 + len([t for t in "[ 1 , 2 , 3 ] . exists ( x , data . l . exists ( y , y == x ) )".split()]))
    assert _steps(text, 0) == 3 + 3 * inner


def test_an_index_is_not_a_literal_list() -> None:
    model = cost_model("data.l[0].exists(x, x > 1)")
    assert model is not None and model.comprehensions[0].literal_size is None


def test_chained_comprehensions_add_up_and_do_not_nest() -> None:
    model = cost_model("data.l.filter(x, x > 1).exists(y, y > 2)")
    assert model is not None and [c.parent for c in model.comprehensions] == [None, None]


def test_membership_tests_inside_a_comprehension_cost_a_scan_each() -> None:
    with_in = _steps("data.l.exists(x, x in data.m)", 100)
    without = _steps("data.l.exists(x, x == data.m)", 100)
    assert with_in > 100 * without


def test_comprehensions_nested_three_deep_are_refused_when_compiled() -> None:
    with pytest.raises(ExpressionError, match="3 deep; at most 2"):
        compile_expression("[1, 2, 3].map(x, data.list.map(y, data.list.map(z, z)))")


def test_literal_lists_too_large_together_are_refused_when_compiled() -> None:
    big = "[" + ",".join(["1"] * 330) + "]"  # 330 * 330 > 100,000
    with pytest.raises(ExpressionError, match="literal lists alone"):
        compile_expression(f"{big}.exists(x, {big}.exists(y, x != y))")


def test_nested_map_over_event_lists_is_stopped_before_it_runs_with_the_sizes_in_the_message() -> None:
    expression = compile_expression("[1, 2, 3].map(x, data.list.map(y, y + x))")
    assert expression.evaluate({"data": {"list": [1, 2]}}) == [[2, 3], [3, 4], [4, 5]]
    # 30,000 elements: this library's map would run for ~20 s; the limit refuses it at once
    with pytest.raises(ExpressionError, match=r"up to [\d,]+ steps \(limit 100,000; its longest list or map "
                                              r"has 30,000 elements, its longest string 4 characters\)"):
        expression.evaluate({"data": {"list": list(range(30_000))}})


def test_an_exists_over_a_long_list_runs_within_the_limit_and_a_longer_one_does_not() -> None:
    expression = compile_expression("data.l.exists(x, x < 0)")
    assert expression.evaluate({"data": {"l": list(range(50_000))}}) is False
    with pytest.raises(ExpressionError, match="steps"):
        expression.evaluate({"data": {"l": list(range(MAX_COST_STEPS + 1))}})


def test_largest_finds_the_longest_list_or_map_at_any_depth() -> None:
    assert largest([{"a": [1, 2, {"b": list(range(7))}]}, None, "xxxxxxxxxxxx"]) == 7


def test_a_scope_converts_each_value_once_for_every_expression() -> None:
    data = {"amount": 5, "items": [1, 2]}
    scope = Scope({"data": data, "event": {"type": "t", "data": data}})
    first = compile_expression("data.amount > 1")
    second = compile_expression("size(data.items) == 2 && event.type == 't'")
    assert first.evaluate(scope) is True and second.evaluate(scope) is True
    assert scope.context(["data"]) is scope.context(["event"])


def test_errors_name_the_expression_and_the_cause() -> None:
    with pytest.raises(ExpressionError, match="no such key"):
        compile_expression("data.missing > 1 && true").evaluate({"data": {}})
    with pytest.raises(ExpressionError, match="division by zero"):
        compile_expression("1 / data.zero").evaluate({"data": {"zero": 0}})
    with pytest.raises(ExpressionError, match="not a valid CEL expression"):
        compile_expression("data.amount >")


def test_the_scan_reads_raw_strings_without_escapes() -> None:
    # in a raw string a backslash is a character: the macro after it is code, not text
    model = cost_model(r"""r'\' + string([1, 2].map(x, x)) + "\" .exists(" + '''a'b'''""")
    assert model is not None and [c.macro for c in model.comprehensions] == ["map"]
    assert compile_expression(r"""r'\' + string(size([1, 2].map(x, x)))""").evaluate({}) == "\\2"


# -- string work inside a comprehension (the reviewer's expressions) ---------------------------------------------

BIG = "a" * 800_000  # an 800 KB field, within the default 1 MiB event limit


def test_a_string_function_on_a_long_field_repeated_per_element_is_refused_before_it_runs() -> None:
    expression = compile_expression("data.tags.exists(t, data.description.contains(t))")
    assert expression.evaluate({"data": {"tags": ["zz"] * 50, "description": "short text"}}) is False

    with pytest.raises(ExpressionError, match=r"steps \(limit 100,000; .* its longest string 800,000 characters\)"):
        expression.evaluate({"data": {"tags": ["zz"] * 5000, "description": BIG}})


def test_the_price_of_string_work_grows_with_the_elements_and_the_kib_of_the_field_read() -> None:
    model = cost_model("data.tags.exists(t, data.description.contains(t))")
    assert model is not None and model.paths == (("data", "description"),)
    small = model.steps(Sizes(10, 800_000, 800_000, (1_000,)))
    large = model.steps(Sizes(10, 800_000, 800_000, (800_000,)))
    assert large - small >= (10 + 14) * KIB_STEPS * (782 - 1), "per element, per KiB of data.description"


def test_string_work_on_the_elements_themselves_is_priced_once_not_per_element() -> None:
    expression = compile_expression("data.items.exists(i, i.qty > 2)")  # a long string elsewhere in the event
    assert expression.evaluate({"data": {"items": [{"qty": 1}] * 1000, "attachment": BIG}}) is False
    model = cost_model("data.items.exists(i, i.qty > 2)")
    assert model is not None and model.comprehensions[0].reads == ()


def test_a_field_read_through_an_enclosing_variable_is_priced_with_the_events_longest_string() -> None:
    model = cost_model("data.orders.exists(o, o.lines.exists(l, o.note.contains(l)))")
    assert model is not None and [c.reads_enclosing for c in model.comprehensions] == [False, True]
    with pytest.raises(ExpressionError, match="steps"):
        compile_expression("data.orders.exists(o, o.lines.exists(l, o.note.contains(l)))").evaluate(
            {"data": {"orders": [{"note": BIG, "lines": ["x"] * 200}]}})


@pytest.mark.parametrize("text", ["data.items.exists(x, data.s.matches(data.p))",
                                  "data.patterns.exists(p, data.subject.matches(p))",
                                  "data.items.exists(x, matches(data.s, data.p))",
                                  "data.items.map(x, x.name.matches('^a' + data.p)).size() > 0"])
def test_matches_with_a_pattern_from_the_event_inside_a_comprehension_is_refused_when_compiled(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"matches\(\) inside a comprehension .* not a string literal"):
        compile_expression(text)


def test_matches_with_a_literal_pattern_inside_a_comprehension_compiles() -> None:
    expression = compile_expression("data.items.exists(x, x.matches('^gift-[0-9]+$'))")
    assert expression.evaluate({"data": {"items": ["a", "gift-12"]}}) is True
    assert compile_expression("data.s.matches(data.p)").evaluate({"data": {"s": "ab", "p": "^a"}}) is True


def test_measure_finds_the_longest_string_and_every_strings_characters() -> None:
    assert measure([{"ab": ["xyz", {"k": "q"}]}, "hello"]) == (2, 5, 2 + 3 + 1 + 1 + 5)
