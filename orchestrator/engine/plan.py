"""③ From an event to the runs it should start: rule matching and parameter rendering. Pure."""

from __future__ import annotations

from ..errors import RuleError, WorkflowError
from ..events.chains import over_limit
from ..events.decisions import MAX_RULES, sampled
from ..events.envelope import Event
from ..jsonutil import dumps, loads
from ..project import Project
from ..rules.match import RuleIndex, event_view
from ..rules.model import Match, MatchResult, Rule
from ..tracing import of_event
from ..workflows.lifecycle import RunRequest
from ..workflows.runs import EventRef, derive_run_id

__all__ = ["Outcomes", "RunRequest", "plan_event", "schedule_of"]


HELD_FOR = "orchheldfor"  # extension of a tick queue-one held: the one rule it goes back to


def _held(raw: bytes, rule: str) -> bytes:
    """The stored event, marked so that when it comes back only `rule` considers it again."""
    body = loads(raw)
    body[HELD_FOR] = rule
    return dumps(body)


def schedule_of(project: Project, event: Event) -> str | None:
    """The project schedule an event is a tick of (by its source `/schedules/<name>`), if any."""
    if not event.source.startswith("/schedules/"):
        return None
    name = event.source.removeprefix("/schedules/")
    return name if name in project.schedules else None


def _matching(index: RuleIndex, event: Event) -> list[tuple[Rule, MatchResult]]:
    """The rules that fully match `event`, without explaining the others: the index's fast path when it has
    one (`matching`), else the full evaluation, filtered."""
    fast = getattr(index, "matching", None)
    if fast is not None:
        return [(rule, MatchResult(rule.name, Match.FULL)) for rule in fast(event)]
    return [(rule, result) for rule, result in index.evaluate(event) if result.outcome is Match.FULL]


class Outcomes(list[tuple[MatchResult, str]]):
    """plan_event's evaluated rules, each with its metric result, and how many rules listening to the event's
    type it left unexplained (`omitted`: they did not match, but no one asked why)."""

    omitted: int = 0


def plan_event(project: Project, event: Event, raw: bytes | None = None, *, depth: int = 0, max_depth: int | None = None,
               sample: float = 1.0, explain_limit: int | None = MAX_RULES) -> tuple[list[RunRequest], Outcomes]:
    """The runs `event` starts, and each evaluated rule with its metric result (matched, not_matched, error).

    `depth` is the event's chain depth (events/chains.py): past `max_depth`, a matching rule's request is a
    record of the run not started (`cut`), whose error says why; its parameters are not rendered.
    The full matches always come from the index's fast path. `sample` is ORCH_EXPLAIN_SAMPLE: an event in the
    sample (decisions.sampled) also has up to `explain_limit` of the rules that did not match explained
    (RuleIndex.explain; None: all of them, as `orch rules test` wants), the rest counted in `omitted`; an event
    outside it has matched and error results only."""
    explain = sampled(event.source, event.id, sample)
    outcomes = Outcomes()
    if not explain:
        evaluated = _matching(project.index, event)
    elif explain_limit is None:
        evaluated = project.index.evaluate(event)
    else:
        evaluated, outcomes.omitted = project.index.explain(event, explain_limit)
    held_for = event.extensions.get(HELD_FOR) if schedule_of(project, event) else None
    if held_for is not None:  # a tick held by queue-one for one rule, back when its previous run ended
        evaluated = [(rule, result) for rule, result in evaluated if rule.name == held_for]
        outcomes.omitted = 0
    if not evaluated:
        return [], outcomes
    view = event_view(event)
    context = {"event": view, "data": view.get("data"), "events": [view]}  # a hold's run gets all (flow/release.py)
    ref = EventRef(event.id, event.source, event.type)
    schedule = schedule_of(project, event)
    overlap = project.schedules[schedule].overlap if schedule else "allow"
    trace = of_event(event)  # the runs carry the event's trace context (tracing.match makes them its spans')
    requests: list[RunRequest] = []
    cut = over_limit(depth, max_depth) if max_depth is not None else None
    for rule, result in evaluated:
        if result.outcome is not Match.FULL:
            outcomes.append((result, "not_matched"))
            continue
        spec = project.workflows[rule.workflow].spec
        run_id = derive_run_id(rule.name, event.source, event.id)
        if cut is not None:
            requests.append(RunRequest(run_id, rule.name, spec, ref, None, f"rule {rule.name}: {cut}", trace=trace,
                                       depth=depth, cut=True, ruleset=project.ruleset))
            outcomes.append((result, "matched"))
            continue
        try:
            params = spec.bind_params(rule.params.render(context))
            claim, note = (rule.controls.claim(rule.name, spec.name, spec.concurrency, context) if rule.controls
                           else (None, None))
        except (RuleError, WorkflowError) as exc:
            requests.append(RunRequest(run_id, rule.name, spec, ref, None, f"rule {rule.name}: {exc}", trace=trace, depth=depth,
                                       ruleset=project.ruleset))
            outcomes.append((result, "error"))
            continue
        guard = f"{schedule}/{rule.name}" if schedule and overlap != "allow" else None
        held = _held(raw, rule.name) if overlap == "queue-one" and raw is not None else None
        requests.append(RunRequest(run_id, rule.name, spec, ref, params, guard=guard, overlap=overlap,
                                   raw=held, event_data=event.data, trace=trace, depth=depth, claim=claim, note=note,
                                   ruleset=project.ruleset))
        outcomes.append((result, "matched"))
    return requests, outcomes
