"""③ Rule parameters rendered from the event in Jinja2's sandbox: types kept, errors named, data inert."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import RuleError
from orchestrator.rules.templates import MAX_RENDERED_BYTES, ParamsTemplate, TemplateCompileError

DATA = {"order_id": "A-1", "total": 42, "customer": {"name": "Ada", "tier": "gold"}, "skus": ["x", "y"]}


def render(params: dict[str, Any], data: Any = None) -> dict[str, Any]:
    event = {"type": "order.created", "source": "/shop", "data": DATA if data is None else data}
    return ParamsTemplate(params).render({"event": event, "data": event["data"]})


def render_error(params: dict[str, Any], data: Any = None) -> str:
    with pytest.raises(RuleError) as caught:
        render(params, data)
    return str(caught.value)


def test_a_single_expression_keeps_its_type() -> None:
    out = render({"total": "{{ event.data.total }}", "customer": "{{ event.data.customer }}",
                  "skus": "{{ event.data.skus }}", "flag": "{{ event.data.total > 40 }}"})

    assert out == {"total": 42, "customer": {"name": "Ada", "tier": "gold"}, "skus": ["x", "y"], "flag": True}


def test_whitespace_around_a_single_expression_is_allowed() -> None:
    assert render({"total": "  {{ data.total }}\n"}) == {"total": 42}


def test_mixed_text_renders_to_a_string() -> None:
    out = render({"label": "order {{ event.data.order_id }} for {{ event.data.total }}"})

    assert out == {"label": "order A-1 for 42"}


def test_two_expressions_render_to_a_string() -> None:
    assert render({"both": "{{ data.total }}{{ data.total }}"}) == {"both": "4242"}


def test_statements_render_to_a_string() -> None:
    assert render({"tier": "{% if data.total > 10 %}big{% else %}small{% endif %}"}) == {"tier": "big"}


def test_values_without_templates_pass_through() -> None:
    params = {"n": 3, "s": "plain", "none": None, "list": [1, "two"], "map": {"k": False}}

    assert render(params) == params


def test_templates_inside_lists_and_dicts_are_rendered() -> None:
    out = render({"args": ["{{ data.order_id }}", {"who": "{{ data.customer.name }}"}]})

    assert out == {"args": ["A-1", {"who": "Ada"}]}


def test_an_undefined_name_names_the_parameter() -> None:
    message = render_error({"order": "{{ event.data.missing_field }}"})

    assert message == "params.order: 'dict object' has no attribute 'missing_field'"


def test_an_undefined_name_in_text_names_the_parameter() -> None:
    message = render_error({"label": "order {{ nothing }}"})

    assert message == "params.label: 'nothing' is undefined"


def test_an_undefined_name_deep_inside_names_the_path() -> None:
    message = render_error({"outer": {"items": ["ok", "{{ nothing }}"]}})

    assert message.startswith("params.outer.items[1]: ")


@pytest.mark.parametrize("template", ["{{ ''.__class__.__mro__ }}", "x {{ ''.__class__.__mro__ }}",
                                      "{{ data.__class__ }}"])
def test_the_sandbox_refuses_private_attributes(template: str) -> None:
    message = render_error({"x": template})

    assert message.startswith("params.x: ")
    assert "unsafe" in message


def test_the_sandbox_refuses_mutation() -> None:
    message = render_error({"x": "{{ data.skus.append('z') }}"})

    assert message.startswith("params.x: ")
    assert DATA["skus"] == ["x", "y"]


def test_event_data_is_never_compiled_as_a_template() -> None:
    data = {"comment": "{{ 7*7 }}", "code": "{% for x in range(9) %}{% endfor %}"}

    out = render({"comment": "{{ data.comment }}", "text": "said: {{ data.comment }}", "code": "{{ data.code }}"},
                 data)

    assert out == {"comment": "{{ 7*7 }}", "text": "said: {{ 7*7 }}", "code": data["code"]}


def test_a_syntax_error_is_a_compile_error_with_the_path() -> None:
    with pytest.raises(TemplateCompileError) as caught:
        ParamsTemplate({"order": {"lines": ["ok", "{{ data.total + }}"]}})

    assert caught.value.path == "params.order.lines[1]"
    assert str(caught.value).startswith("template error: ")


def test_a_syntax_error_in_text_is_a_compile_error() -> None:
    with pytest.raises(TemplateCompileError) as caught:
        ParamsTemplate({"label": "a {% if %} b"})

    assert caught.value.path == "params.label"


def test_rendered_text_over_the_limit_is_refused() -> None:
    # Text is counted as it is produced, so the render stops at the chunk that crosses the limit.
    message = render_error({"blob": "x{{ 'y' * 70000 }}"})

    assert message.startswith(f"params.blob: rendered value is over the limit of {MAX_RENDERED_BYTES} bytes "
                              "(stopped after 70001 characters)")


def test_text_just_under_the_limit_is_accepted() -> None:
    out = render({"blob": "x{{ data.filler }}"}, {"filler": "y" * (MAX_RENDERED_BYTES - 1)})

    assert len(out["blob"]) == MAX_RENDERED_BYTES


def test_a_single_expression_over_the_limit_is_refused() -> None:
    # The 64 KiB limit is on the rendered value; a lone expression must not escape it.
    message = render_error({"blob": "{{ 'y' * 70000 }}"})

    assert message.startswith("params.blob: rendered value is")


def test_the_limit_counts_bytes_not_characters() -> None:
    # MAX_RENDERED_BYTES is 64 KiB: 30,000 euro signs are 90,000 bytes of UTF-8.
    message = render_error({"blob": "x{{ '€' * 30000 }}"})

    assert message.startswith("params.blob: rendered value is")


def test_a_value_that_is_not_json_is_refused() -> None:
    message = render_error({"r": "{{ range(3) }}"})

    assert message == "params.r: range is not JSON (use dict, list, str, int, float, bool or None)"


def test_a_nan_from_event_data_is_refused() -> None:
    message = render_error({"amount": "{{ data.amount | float }}"}, {"amount": "nan"})

    assert message == "params.amount: nan is not valid JSON (only finite numbers are)"


def test_an_arithmetic_error_names_the_parameter() -> None:
    message = render_error({"ratio": "{{ data.total / 0 }}"})

    assert message.startswith("params.ratio: ZeroDivisionError")


def test_a_filter_that_fails_on_event_data_is_a_rule_error() -> None:
    # Jinja's `truncate` asserts on a length shorter than its ellipsis; the length here comes from the
    # event, so a bad event must fail the rule (RuleError), not escape as an AssertionError.
    message = render_error({"note": "{{ data.note | truncate(data.max_len) }}"}, {"note": "hello world", "max_len": 1})

    assert message.startswith("params.note: ")


def test_rendering_twice_gives_the_same_result() -> None:
    template = ParamsTemplate({"id": "{{ data.order_id }}", "n": "{{ data.total }}"})
    context = {"event": {"data": DATA}, "data": DATA}

    assert template.render(context) == template.render(context) == {"id": "A-1", "n": 42}
    assert template.source == {"id": "{{ data.order_id }}", "n": "{{ data.total }}"}


@pytest.mark.parametrize("expr", ["event.data.total", "data.customer.name", "data.customer", "event.type",
                                  "data.items", "data.keys", "data.get", "data.skus", "data.missing",
                                  "data.customer.name.upper", "data.skus.0", "events", "none", "true", "nothing",
                                  "data.__class__", "data._hidden", "data.n.m"])
def test_a_plain_name_path_renders_as_jinja_evaluates_it(expr: str) -> None:
    # name paths are looked up without Jinja where every step is a dict key; the rest is Jinja's: compare
    from orchestrator.rules import templates

    data = {**DATA, "items": [1], "_hidden": 7, "n": 3}
    event = {"type": "order.created", "source": "/shop", "data": data}
    context = {"event": event, "data": data}

    def both(compiled: Any) -> Any:
        try:
            return ("ok", templates._render(compiled, context, ("p",)))
        except RuleError as exc:
            return ("error", str(exc))

    fast = templates._compile("{{ " + expr + " }}", ())
    jinja = templates._Expr(fast.source, fast.fn)  # the same expression without its path

    assert both(fast) == both(jinja)
    if expr in ("event.data.total", "data.customer.name", "data._hidden"):
        assert fast.path is not None and templates._lookup(fast.path, context) is not templates._MISSING
