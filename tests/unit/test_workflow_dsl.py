"""④ `@task` / `@workflow` record a validated graph; WorkflowSpec stores, orders and resolves it."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import CycleError, TaskError, WorkflowError, task, workflow
from orchestrator.jsonutil import dumps, loads
from orchestrator.workflows.spec import NodeSpec, ParamSpec, WorkflowSpec, build_spec, resolve


@task
def fetch(order_id: str) -> dict[str, Any]:
    return {"id": order_id, "lines": [{"sku": "x"}], "total": 10}


@task(queue="payments")
def charge(order: Any, amount: Any = None) -> dict[str, Any]:
    return {"charged": amount}


@task
def reserve(order: Any) -> dict[str, Any]:
    return {"reserved": True}


@task
def confirm(payment: Any, stock: Any) -> str:
    return "ok"


@task
def step(value: Any = None) -> Any:
    return value


def upstream_of(spec: WorkflowSpec) -> dict[str, tuple[str, ...]]:
    return {node.name: node.upstream for node in spec.nodes}


# -- @task -------------------------------------------------------------------------------------------


def test_a_task_called_outside_a_workflow_runs_the_function() -> None:
    assert fetch("A-1") == {"id": "A-1", "lines": [{"sku": "x"}], "total": 10}
    assert charge.queue == "payments" and fetch.queue == "default"
    assert fetch.name == "fetch"


def test_with_options_outside_a_workflow_is_an_error() -> None:
    with pytest.raises(WorkflowError, match=r"fetch.with_options\(...\) can only be called inside a workflow"):
        fetch.with_options(name="again")("A-1")


def test_a_task_name_must_be_valid() -> None:
    with pytest.raises(WorkflowError, match="invalid task name 'no spaces'"):
        task(name="no spaces")(lambda: None)


def test_a_queue_name_must_be_valid() -> None:
    with pytest.raises(WorkflowError, match="task 'q': invalid queue name 'a queue'"):
        task(name="q", queue="a queue")(lambda: None)


# -- dependencies ------------------------------------------------------------------------------------


def test_passing_a_result_makes_a_dependency() -> None:
    @workflow
    def process(order_id: str) -> None:
        order = fetch(order_id)
        charge(order)

    assert upstream_of(process.spec) == {"fetch": (), "charge": ("fetch",)}
    assert process.spec.node("fetch").args == ({"$param": "order_id", "path": []},)
    assert process.spec.node("charge").args == ({"$ref": "fetch", "path": []},)
    assert process.spec.node("charge").queue == "payments"
    assert process.tasks == {"fetch": fetch, "charge": charge}


def test_a_task_receiving_two_results_waits_for_both() -> None:
    @workflow
    def fan_in(order_id: str) -> None:
        order = fetch(order_id)
        confirm(charge(order), reserve(order))

    assert upstream_of(fan_in.spec)["confirm"] == ("charge", "reserve")
    assert fan_in.spec.levels() == [["fetch"], ["charge", "reserve"], ["confirm"]]


def test_an_item_of_a_result_is_a_path_into_it() -> None:
    @workflow
    def items(order_id: str) -> None:
        order = fetch(order_id)
        step(order["lines"][0]["sku"])

    assert items.spec.node("step").args == ({"$ref": "fetch", "path": ["lines", 0, "sku"]},)
    assert upstream_of(items.spec)["step"] == ("fetch",)


def test_results_nested_in_containers_are_dependencies() -> None:
    @workflow
    def nested(order_id: str) -> None:
        order = fetch(order_id)
        step({"order": order, "ids": [order_id, "fixed"]})

    (arg,) = nested.spec.node("step").args
    assert arg == {"$dict": {"order": {"$ref": "fetch", "path": []},
                             "ids": {"$list": [{"$param": "order_id", "path": []}, {"$lit": "fixed"}]}}}
    assert upstream_of(nested.spec)["step"] == ("fetch",)


def test_explicit_after_takes_results_or_names() -> None:
    @workflow
    def ordered() -> None:
        first = step.with_options(name="first")(1)
        step.with_options(name="second", after=[first])(2)
        step.with_options(name="third", after=["second"], queue="slow")(3)

    assert upstream_of(ordered.spec) == {"first": (), "second": ("first",), "third": ("second",)}
    assert ordered.spec.node("third").queue == "slow"
    assert ordered.spec.node("second").args == ({"$lit": 2},)


def test_calling_the_same_task_again_names_the_nodes_apart() -> None:
    @workflow
    def thrice() -> None:
        step(1)
        step(2)
        step(3)

    assert sorted(n.name for n in thrice.spec.nodes) == ["step", "step_2", "step_3"]
    assert {n.task for n in thrice.spec.nodes} == {"step"}


def test_a_literal_dict_that_looks_like_a_reference_stays_a_literal() -> None:
    @workflow
    def literal() -> None:
        step({"$ref": "nothing"})

    assert literal.spec.node("step").args == ({"$lit": {"$ref": "nothing"}},)
    assert literal.spec.node("step").upstream == ()


# -- errors ------------------------------------------------------------------------------------------


def test_an_unknown_task_name_in_after_is_an_error() -> None:
    with pytest.raises(WorkflowError) as caught:
        @workflow
        def unknown() -> None:
            step.with_options(after=["nope"])(1)

    assert str(caught.value) == "workflow 'unknown': task 'step' depends on unknown task 'nope' (tasks: step)"


def test_a_cycle_is_an_error_that_shows_it() -> None:
    with pytest.raises(CycleError) as caught:
        @workflow
        def circular() -> None:
            early = step.with_options(name="early", after=["later"])()
            step.with_options(name="later")(early)

    assert caught.value.cycle in (["early", "later", "early"], ["later", "early", "later"])
    assert str(caught.value).startswith("workflow 'circular' has a dependency cycle: ")
    assert " -> " in str(caught.value)


def test_two_nodes_with_the_same_explicit_name_are_an_error() -> None:
    with pytest.raises(WorkflowError, match="workflow 'twins': two tasks are named 'x'"):
        @workflow
        def twins() -> None:
            step.with_options(name="x")()
            step.with_options(name="x")()


def test_wrong_arguments_name_the_task() -> None:
    with pytest.raises(WorkflowError) as caught:
        @workflow
        def arity() -> None:
            confirm(1)

    assert str(caught.value) == "workflow 'arity': task 'confirm': missing a required argument: 'stock'"


def test_an_unknown_keyword_argument_names_the_task() -> None:
    with pytest.raises(WorkflowError, match="workflow 'kw': task 'fetch': got an unexpected keyword argument"):
        @workflow
        def kw() -> None:
            fetch("A-1", colour="red")


def test_a_literal_argument_must_be_json() -> None:
    with pytest.raises(WorkflowError) as caught:
        @workflow
        def not_json() -> None:
            step(object())

    assert str(caught.value) == ("workflow 'not_json': task 'step': argument 0: object is not JSON "
                                 "(use dict, list, str, int, float, bool or None)")


def test_a_non_finite_literal_is_refused() -> None:
    with pytest.raises(WorkflowError, match=r"task 'step': argument 0: nan is not valid JSON"):
        @workflow
        def nan() -> None:
            step(value=float("nan"))


def test_testing_a_result_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="<result of fetch> has no value while the workflow is being defined"):
        @workflow
        def branching(order_id: str) -> None:
            if fetch(order_id):
                step()


def test_iterating_over_a_parameter_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="<parameter ids> has no value while the workflow is being defined"):
        @workflow
        def looping(ids: list[str]) -> None:
            for item in ids:
                step(item)


def test_formatting_a_parameter_into_a_string_is_an_error() -> None:
    # Like testing or iterating, formatting needs the value: it must not silently pass "<parameter p>".
    with pytest.raises(WorkflowError):
        @workflow
        def formatted(order_id: str) -> None:
            step(f"order-{order_id}")


def test_star_parameters_are_refused() -> None:
    with pytest.raises(WorkflowError, match=r"workflow 'star': parameters must be named"):
        @workflow
        def star(*ids: str) -> None:
            step(ids)


def test_a_default_must_be_json() -> None:
    with pytest.raises(WorkflowError, match="workflow 'bad_default': default of 'when': object is not JSON"):
        @workflow
        def bad_default(when: object = object()) -> None:  # noqa: B008 - the point of the test
            step(when)


def test_a_workflow_needs_a_task() -> None:
    with pytest.raises(WorkflowError, match="workflow 'empty' has no tasks"):
        @workflow
        def empty() -> None:
            pass


def test_a_result_from_another_workflow_is_refused() -> None:
    leaked: list[Any] = []

    @workflow
    def first() -> None:
        leaked.append(step(1))

    with pytest.raises(WorkflowError, match="belongs to another workflow"):
        @workflow
        def second() -> None:
            step(leaked[0])


# -- WorkflowSpec ------------------------------------------------------------------------------------


def order_workflow() -> WorkflowSpec:
    @workflow(name="orders")
    def process(order_id: str, amount: float = 1.5, tags: list[str] | None = None) -> None:
        order = fetch(order_id)
        payment = charge(order, amount=amount)
        confirm(payment, reserve(order))

    return process.spec


def test_a_spec_round_trips_through_json() -> None:
    spec = order_workflow()

    again = WorkflowSpec.from_dict(loads(dumps(spec.to_dict())))

    assert again == spec
    assert again.digest == spec.digest


def test_the_digest_is_stable_and_tells_graphs_apart() -> None:
    @workflow(name="orders")
    def other(order_id: str, amount: float = 1.5, tags: list[str] | None = None) -> None:
        fetch(order_id)

    assert order_workflow().digest == order_workflow().digest
    assert other.spec.digest != order_workflow().digest
    assert len(order_workflow().digest) == 12


def test_levels_group_nodes_by_depth() -> None:
    assert order_workflow().levels() == [["fetch"], ["charge", "reserve"], ["confirm"]]


def test_downstream_lists_direct_dependents() -> None:
    assert order_workflow().downstream == {"fetch": ["charge", "reserve"], "charge": ["confirm"],
                                           "reserve": ["confirm"], "confirm": []}


def test_nodes_are_in_a_topological_order() -> None:
    spec = build_spec("wf", [], [NodeSpec("c", "t", upstream=("b",)), NodeSpec("b", "t", upstream=("a",)),
                                 NodeSpec("a", "t")])

    assert [n.name for n in spec.nodes] == ["a", "b", "c"]


def test_bind_params_fills_in_defaults() -> None:
    assert order_workflow().bind_params({"order_id": "A-1"}) == {"order_id": "A-1", "amount": 1.5, "tags": None}


def test_bind_params_names_unknown_parameters() -> None:
    with pytest.raises(WorkflowError) as caught:
        order_workflow().bind_params({"order_id": "A-1", "colour": "red", "bogus": 1})

    assert str(caught.value) == ("workflow 'orders' has no parameter 'bogus', 'colour' "
                                 "(parameters: amount, order_id, tags)")


def test_bind_params_names_a_missing_parameter() -> None:
    with pytest.raises(WorkflowError, match="workflow 'orders' needs parameter 'order_id'"):
        order_workflow().bind_params({"amount": 3})


def test_params_record_which_are_required() -> None:
    assert [(p.name, p.required) for p in order_workflow().params] == [
        ("order_id", True), ("amount", False), ("tags", False)]
    assert ParamSpec("x", default=None).required is False


# -- resolve -----------------------------------------------------------------------------------------


def test_resolve_builds_concrete_arguments() -> None:
    params = {"order_id": "A-1", "opts": {"fast": True}}
    results = {"fetch": {"lines": [{"sku": "x"}, {"sku": "y"}]}}
    template = {"$dict": {
        "id": {"$param": "order_id", "path": []},
        "fast": {"$param": "opts", "path": ["fast"]},
        "sku": {"$ref": "fetch", "path": ["lines", 1, "sku"]},
        "all": {"$list": [{"$lit": 1}, {"$ref": "fetch", "path": []}]},
    }}

    assert resolve(template, params, results) == {
        "id": "A-1", "fast": True, "sku": "y", "all": [1, {"lines": [{"sku": "x"}, {"sku": "y"}]}]}


def test_resolve_names_a_missing_item_of_a_result() -> None:
    with pytest.raises(TaskError, match="result of fetch has no item 'missing'"):
        resolve({"$ref": "fetch", "path": ["missing"]}, {}, {"fetch": {"id": 1}})


def test_resolve_names_a_missing_index_of_a_parameter() -> None:
    with pytest.raises(TaskError, match="parameter ids has no item 5"):
        resolve({"$param": "ids", "path": [5]}, {"ids": [1]}, {})


def test_resolve_refuses_an_item_of_a_scalar() -> None:
    with pytest.raises(TaskError, match="result of fetch has no item 'x'"):
        resolve({"$ref": "fetch", "path": ["x"]}, {}, {"fetch": 3})


def test_resolve_refuses_an_unknown_template() -> None:
    with pytest.raises(TaskError, match="unknown argument template"):
        resolve({"$what": 1}, {}, {})
