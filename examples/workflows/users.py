"""Users: greet new users on paid plans."""

from orchestrator import task, workflow


@task
def send_welcome(email: str, plan: str) -> dict:
    """Send the welcome mail (here: return what would be sent)."""
    return {"to": email, "subject": f"Welcome to the {plan} plan"}


@workflow
def welcome_user(email: str, plan: str = "free"):
    send_welcome(email, plan)
