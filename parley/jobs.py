"""Imports every module that registers background jobs, so the runner sees them all."""

from parley.auth import tasks as auth_tasks
from parley.automation import tasks as automation_tasks
from parley.contacts import profiles as contact_profiles
from parley.conversations import tasks as conversation_tasks
from parley.delivery import tasks as delivery_tasks

__all__ = ["auth_tasks", "automation_tasks", "contact_profiles", "conversation_tasks", "delivery_tasks"]
