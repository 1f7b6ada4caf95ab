"""Alerts: post to a Slack incoming webhook when a run fails (rules/alerts.yaml, off until you enable it).

    orch.run.failed / orch.run.timed_out ──> alert_slack: post_to_slack (http)

The webhook URL comes from SLACK_WEBHOOK_URL, read when the project loads. It becomes part of the
workflow's version, so give the engine and the workers the same value (a worker that loaded another
URL refuses the job with UnknownWorkflowVersion). Unset, the URL is the placeholder below, which Slack
answers with 404 (final: not retried).

The http kind's egress policy applies: hooks.slack.com resolves to public addresses, which the default
policy allows, so nothing needs allowing. A chat server on a private address (Mattermost on 10.0.0.7,
say) must be allowed on the workers: ORCH_HTTP_ALLOW=10.0.0.7. Proxies from the environment are not
used. Slack's URL holds its secret in the path, which the attempt's logs show: keep runs:read tokens
to people who may see it.

An alert that fails announces orch.run.failed too; the `when` condition skips the post for the alert
workflow's own failures, so a broken webhook costs one failed alert per failed run, not a chain.
"""

import os

from orchestrator import call_http, workflow

# PLACEHOLDER: set SLACK_WEBHOOK_URL to your incoming webhook (https://api.slack.com/messaging/webhooks).
SLACK_WEBHOOK_URL = os.environ.get("SLACK_WEBHOOK_URL",
                                   "https://hooks.slack.com/services/T00000000/B00000000/PLACEHOLDER")


@workflow(timeout_s=120)
def alert_slack(workflow: str, text: str):
    call_http("post_to_slack", SLACK_WEBHOOK_URL, method="POST", json={"text": text},
              when="params.workflow != 'alert_slack'", retries={"max_retries": 3, "backoff_s": 5},
              timeout_s=10)
