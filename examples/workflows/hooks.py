"""Pull requests from GitHub (through the `github` webhook endpoint in rules/hooks.yaml).

    triage_pull_request ──> thank_author

Here the tasks only return what they would do; a real one would call the GitHub API with a token.
"""

from orchestrator import task, workflow


@task
def triage_pull_request(repo: str, number: int, title: str) -> dict:
    """Pick labels from the title."""
    words = title.lower()
    labels = [label for label, hint in (("docs", "doc"), ("bug", "fix"), ("feature", "add")) if hint in words]
    return {"repo": repo, "number": number, "labels": labels}


@task
def thank_author(repo: str, number: int, author: str, triage: dict) -> str:
    """Say thank you, with the labels picked."""
    labels = ", ".join(triage["labels"]) or "none"
    return f"{repo}#{number}: thanks @{author}! labels: {labels}"


@workflow
def review_pull_request(repo: str, number: int, title: str, author: str):
    triage = triage_pull_request(repo, number, title)
    thank_author(repo, number, author, triage)
