"""Imports every module that registers background jobs, so the runner sees them all."""

from parley.auth import tasks as auth_tasks
from parley.automation import tasks as automation_tasks
from parley.contacts import lifecycle as contact_lifecycle
from parley.contacts import profiles as contact_profiles
from parley.contacts.imports import tasks as contact_import_tasks
from parley.contacts.sync import tasks as follower_sync_tasks
from parley.conversations import tasks as conversation_tasks
from parley.delivery import tasks as delivery_tasks
from parley.ops import tasks as ops_tasks
from parley.routing import tasks as routing_tasks

__all__ = [
    "auth_tasks",
    "automation_tasks",
    "contact_import_tasks",
    "contact_lifecycle",
    "contact_profiles",
    "conversation_tasks",
    "delivery_tasks",
    "follower_sync_tasks",
    "ops_tasks",
    "routing_tasks",
]
