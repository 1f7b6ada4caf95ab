"""Rules, workflows, schedules, webhooks, watches, workers and queues in the UI."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
