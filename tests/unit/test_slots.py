"""What a job carries (slots), what a shell node may be built from, and how a worker checks a job."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executors.catalog import Catalog, ForgedJob, UnknownWorkflowVersion
from executors.kinds.errors import UnknownTaskError
from orchestrator import call_http, run_shell, task, workflow
from orchestrator.errors import WorkflowError
from orchestrator.rules.templates import could_render, render_value
from orchestrator.workflows.slots import SlotError, bind, collect
from orchestrator.workflows.spec import NodeSpec, build_spec


@task
def ship(order: dict[str, Any], carrier: str = "dhl", express: bool = False) -> str:
    return f"{order['id']} by {carrier}"


@task
def lookup(order_id: str) -> dict[str, Any]:
    return {"id": order_id}


@workflow
def deliver(order_id: str, host: str):
    order = lookup(order_id)
    ship(order, carrier="ups")
    run_shell("label", ["print-label", "--order", order_id, "--copies", "2"], env={"CARRIER": host})
    call_http("notify", f"https://{'example.com'}/hooks", json={"order": order["id"], "static": True})


def node(name: str) -> NodeSpec:
    return deliver.spec.node(name)


def test_a_job_carries_only_the_values_the_spec_does_not_write() -> None:
    params = {"order_id": "A-1", "host": "h1"}
    results = {"lookup": {"id": "A-1"}}

    assert collect(node("lookup"), params, results) == ["A-1"]
    assert collect(node("ship"), params, results) == [{"id": "A-1"}]  # carrier="ups" stays in the spec
    assert collect(node("label"), params, results) == ["A-1", "h1"]  # the program and flags stay
    assert collect(node("notify"), params, results) == ["A-1"]


def test_the_worker_rebuilds_the_call_from_its_spec_and_the_values() -> None:
    assert bind(node("ship"), [{"id": "A-1"}]) == ([{"id": "A-1"}, "ups"], {})
    args, kwargs = bind(node("label"), ["A-1; rm -rf /", "h1"])
    assert kwargs["command"] == ["print-label", "--order", "A-1; rm -rf /", "--copies", "2"]  # one argv element
    assert kwargs["env"] == {"CARRIER": "h1"}
    assert bind(node("notify"), ["A-1"])[1]["url"] == "https://example.com/hooks"


@pytest.mark.parametrize("values", [[], ["A-1", "h1", "extra"], ["A-1"]])
def test_values_that_do_not_fit_the_slots_are_refused(values: list[Any]) -> None:
    with pytest.raises(SlotError, match="not made from this version"):
        bind(node("label"), values)


def shell_node(**kwargs: Any) -> NodeSpec:
    return NodeSpec(name="s", task="shell", kind="shell", kwargs=kwargs)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"command": {"$param": "cmd", "path": []}}, "the program to run"),
    ({"command": {"$list": [{"$param": "prog", "path": []}, {"$lit": "-x"}]}}, "the program to run"),
    ({"command": {"$tmpl": "echo {{ params.x }}", "refs": []}, "shell": {"$lit": True}}, "may not hold values"),
    ({"command": {"$lit": "echo hi"}, "shell": {"$param": "sh", "path": []}}, "shell must be written out"),
    ({"command": {"$lit": ["env"]}, "env": {"$param": "vars", "path": []}}, "env must be a mapping written out"),
])
def test_a_shell_node_whose_structure_could_come_from_data_is_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(WorkflowError, match=fragment):
        build_spec("w", (), [shell_node(**kwargs)])


def test_the_dsl_refuses_a_program_or_an_environment_from_data() -> None:
    with pytest.raises(WorkflowError, match="the program to run"):
        @workflow
        def run_what_it_is_told(program: str):
            run_shell("bad", [program, "--help"])

    with pytest.raises(WorkflowError, match="env must be a mapping written out"):
        @workflow
        def set_what_it_is_told(variables: dict[str, str]):
            run_shell("bad", ["env"], env=variables)


# -- the worker's catalog ----------------------------------------------------------------------------------


CATALOG = Catalog([deliver.spec], {"lookup": lookup, "ship": ship}, default_timeout_s=600)


def payload(**overrides: Any) -> dict[str, Any]:
    return {"workflow": "deliver", "version": deliver.spec.digest, "node": "label", "run": "r1", "attempt": 1,
            "args": ["A-1", "h1"], **overrides}


def test_a_job_of_a_known_version_resolves_to_the_projects_work() -> None:
    work = CATALOG.work(payload())

    assert (work.kind, work.task, work.timeout_s, work.key) == ("shell", "shell", 600.0, "r1:label")
    assert work.kwargs["command"][0] == "print-label"


@pytest.mark.parametrize(("overrides", "error", "fragment"), [
    ({"kind": "shell"}, ForgedJob, "unexpected field(s) kind"),
    ({"command": ["touch", "/tmp/x"], "kwargs": {}}, ForgedJob, "unexpected field(s) command, kwargs"),
    ({"attempt": "1"}, ForgedJob, "wrong type"),
    ({"attempt": True}, ForgedJob, "wrong type"),
    ({"args": {"command": "x"}}, ForgedJob, "wrong type"),
    ({"version": "0123456789ab"}, UnknownWorkflowVersion, "deploy the same project to workers and engine"),
    ({"workflow": "other"}, UnknownWorkflowVersion, "no such workflow"),
    ({"node": "nope"}, UnknownTaskError, "has no task 'nope'"),
    ({"args": ["A-1"]}, ForgedJob, "carries 1 argument value"),
])
def test_a_job_the_project_does_not_define_is_refused(overrides: dict[str, Any], error: type[Exception],
                                                      fragment: str) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")) as caught:
        CATALOG.work(payload(**overrides))
    assert getattr(caught.value, "retryable", None) is False


def test_a_payload_missing_its_fields_is_refused() -> None:
    with pytest.raises(ForgedJob, match="lacks args, attempt"):
        CATALOG.work({"workflow": "deliver", "version": "x", "node": "label", "run": "r1"})
    with pytest.raises(ForgedJob, match="not an object"):
        CATALOG.work(["deliver"])


# -- a value for a text template keeps the template's fixed text ----------------------------------------------


@pytest.mark.parametrize(("source", "value", "fits"), [
    ("https://api.example/orders/{{ params.id }}", "https://api.example/orders/A-1", True),
    ("https://api.example/orders/{{ params.id }}", "https://api.example/orders/", True),
    ("https://api.example/orders/{{ params.id }}", "http://attacker.example/steal", False),
    ("https://api.example/orders/{{ params.id }}", "https://api.example.attacker/orders/1", False),
    ("https://api.example/{{ a }}/x/{{ b }}.json", "https://api.example/1/x/2.json", True),
    ("https://api.example/{{ a }}/x/{{ b }}.json", "https://api.example/1/x/x/x/2.json", True),
    ("https://api.example/{{ a }}/x/{{ b }}.json", "https://api.example/1/2.json", False),
    ("{{ params.url }}", "http://anything.example/", True),  # the author chose to take the whole value
    ("{{ params.n }}", 7, True),
    ("order {{ params.id }}", 7, False),
    ("{% if a %}https://a.example/{% else %}https://b.example/{% endif %}{{ x }}", "https://c.example/", True),
    ("https://api.example/{% if a %}x{% endif %}/{{ b }}.json", "https://api.example/y/1.json", True),
    ("https://api.example/{% if a %}x{% endif %}/{{ b }}.json", "https://evil.example/1.json", False),
    ("a {{- x }}", "aX", True),  # whitespace control: the stripped space is not fixed text
    ("a {{ x }}\n", "a X", True),  # Jinja drops a template's trailing newline
    ("q{# note #}r{{ x }}", "qrX", True),
    ("https://{% if params.eu %}eu.{% endif %}api.partner.example/orders/{{ params.id }}",
     "https://evil.example/x", False),  # text outside the tag is fixed even with tags present
    ("https://{% if params.eu %}eu.{% endif %}api.partner.example/orders/{{ params.id }}",
     "https://eu.api.partner.example/orders/7", True),
    ("{% raw %}{{ literal }}{% endraw %}/{{ x }}", "{{ literal }}/y", True),
    ("{% raw %}{{ literal }}{% endraw %}/{{ x }}", "other/y", False),
])
def test_could_render(source: str, value: Any, fits: bool) -> None:
    assert could_render(source, value) is fits


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab/:.{}% ", max_size=6), min_size=1, max_size=4),
       st.lists(st.text(alphabet="ab/:.", max_size=6), min_size=3, max_size=3))
def test_whatever_a_template_renders_fits_it(texts: list[str], values: list[str]) -> None:
    pieces = [t.replace("{", "(").replace("}", ")").replace("%", "p") for t in texts]  # no tags in the text
    source = "".join(f"{piece}{{{{ v[{i}] }}}}" for i, piece in enumerate(pieces[:-1])) + pieces[-1]
    if "{{" not in source:
        source += "{{ v[2] }}"
    rendered = render_value(source, {"v": values}, "t")
    assert could_render(source, rendered)


def test_a_forged_value_for_a_url_template_is_refused() -> None:
    node = NodeSpec(name="notify", task="http", kind="http", kwargs={
        "url": {"$tmpl": "https://partner.example/orders/{{ params.order_id }}", "refs": []},
        "headers": {"$lit": {"Authorization": "Bearer s3cr3t"}}})
    (url,) = collect(node, {"order_id": "A-1"}, {})
    assert url == "https://partner.example/orders/A-1"
    bind(node, [url])
    with pytest.raises(SlotError, match="not one it could render"):
        bind(node, ["http://attacker.example/steal"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="ab/:. ", max_size=5), st.sampled_from(["text", "if", "for", "expr"])),
                min_size=1, max_size=6),
       st.lists(st.booleans(), min_size=6, max_size=6), st.lists(st.text(alphabet="ab/:.", max_size=4), max_size=3))
def test_whatever_a_template_with_tags_renders_fits_it(parts: list[tuple[str, str]], flags: list[bool],
                                                      items: list[str]) -> None:
    source = ""
    for i, (text, kind) in enumerate(parts):
        source += {"text": text, "if": f"{{% if f[{i}] %}}{text}{{% endif %}}",
                   "for": f"{{% for x in xs %}}{text}{{{{ x }}}}{{% endfor %}}", "expr": f"{text}{{{{ xs|length }}}}"}[kind]
    source += "{{ f[0] }}"
    rendered = render_value(source, {"f": flags, "xs": items}, "t")
    assert could_render(source, str(rendered))
