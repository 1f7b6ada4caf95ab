"""① Webhooks: `POST /hooks/{name}` endpoints declared under `hooks:` in a project's YAML.

    config.py    the endpoint model (`hooks:`), its project section, `load_hooks`
    verify.py    signature checks (github, stripe, slack, standard, token, none): pure, clock passed in
    secrets.py   secrets from environment variables / files, read when `orch api` starts
    mapping.py   body parsing and the request -> CloudEvent mapping: pure
    router.py    the APIRouter `orch api` includes (import it from triggers.webhooks.router: this package
                 stays importable without the web stack, for the roles that only load the project)

Order of work per request: endpoint known (404) -> body under `max_body_bytes` (413) -> signature over the
raw bytes (401) -> body parsed (400 malformed JSON or NaN/Infinity, 415 content type, 422 not an object,
too deep, or unmappable) -> published with dedup on (source, id) in one Lua script with the XADD -> 202.

How a request becomes an event (source `/hooks/<name>` unless `source:` says otherwise; data = the JSON
body; `type:`, `id:`, `subject:` templates on the endpoint override each default):

    scheme    type                                      id (the dedup key)             subject
    github    github.<X-GitHub-Event>[.<body.action>]    github-<sha256 of the body>    body.repository.full_name
              e.g. github.pull_request.opened, github.push, github.ping; X-GitHub-Delivery goes to the
              `githubdelivery` extension attribute. GitHub signs only the body, so a captured request
              replayed with a fresh delivery id is still a duplicate, and X-GitHub-Event must agree with
              the body for the events whose payloads tell (push, pull_request, issues, ...: else 422)
    stripe    stripe.<body.type>                        body.id (evt_...)              body.data.object.id
              e.g. stripe.checkout.session.completed
    slack     slack.<body.event.type> (Events API),      body.event_id, else a hash     body.event.channel,
              slack.<body.type> (interactivity),         of the signed timestamp        or the command
              slack.command (slash commands)             and the body
              url_verification is answered ({"challenge": ...}) and publishes nothing
    standard  <name>.<body.type>, or <name>              webhook-id                     -
    token     <name>.<body.type>, or <name>              a new id: no dedup unless      -
    none                                                 `id:` is set

A valid W3C `traceparent` (and `tracestate`) request header becomes the event's trace context (the
CloudEvents distributed-tracing attributes); like X-GitHub-Delivery it is not signed, and serves tracing only.

Templates run in Jinja2's sandbox with `body` (also `data`), `headers` (lower-case names; never
Authorization, Cookie or the token header) and `hook`; they are compiled from the project's YAML only.
GitHub and Slack may also send `application/x-www-form-urlencoded` (a JSON `payload` field, or Slack's
slash-command fields). Replays: a timestamp further than `tolerance_s` (300 s) from now is refused; an
event id seen within the endpoint's dedup window (github 7 days, others 24 h, at least twice the
tolerance) answers 202 with `"duplicate": true` and publishes nothing.
"""

from .config import SECTION, HookConfig, Scheme, load_hooks
from .mapping import Challenge, Rejected, build_event, parse_payload
from .secrets import HookSecrets, resolve_all, resolve_secrets
from .verify import SignatureError, Verified, standard_key, verify

__all__ = [
    "SECTION",
    "Challenge",
    "HookConfig",
    "HookSecrets",
    "Rejected",
    "Scheme",
    "SignatureError",
    "Verified",
    "build_event",
    "load_hooks",
    "parse_payload",
    "resolve_all",
    "resolve_secrets",
    "standard_key",
    "verify",
]
