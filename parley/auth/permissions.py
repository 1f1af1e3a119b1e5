"""Named permissions. Every endpoint checks one; roles are sets of them."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    users_read = "users.read"
    users_write = "users.write"
    roles_read = "roles.read"
    roles_write = "roles.write"
    teams_read = "teams.read"
    teams_write = "teams.write"
    audit_read = "audit.read"
    channels_read = "channels.read"
    channels_write = "channels.write"
    conversations_read = "conversations.read"
    conversations_write = "conversations.write"
    contacts_read = "contacts.read"
    contacts_write = "contacts.write"
    marketing_read = "marketing.read"
    marketing_write = "marketing.write"
    service_read = "service.read"
    service_write = "service.write"
    reports_read = "reports.read"
    operations_read = "operations.read"
    operations_write = "operations.write"
    automation_read = "automation.read"
    automation_write = "automation.write"


ALL_PERMISSIONS: frozenset[str] = frozenset(p.value for p in Permission)

ADMINISTRATOR = "administrator"
SUPERVISOR = "supervisor"
AGENT = "agent"

BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    ADMINISTRATOR: ("Everything, including channels, people and permissions.", ALL_PERMISSIONS),
    SUPERVISOR: (
        "Runs the service: sees everyone's work, reassigns, reads reports and operations.",
        frozenset(
            {
                Permission.users_read,
                Permission.roles_read,
                Permission.teams_read,
                Permission.audit_read,
                Permission.channels_read,
                Permission.conversations_read,
                Permission.conversations_write,
                Permission.contacts_read,
                Permission.contacts_write,
                Permission.marketing_read,
                Permission.service_read,
                Permission.service_write,
                Permission.reports_read,
                Permission.operations_read,
                Permission.operations_write,
            }
        ),
    ),
    AGENT: (
        "Chats with customers and keeps their records.",
        frozenset(
            {
                Permission.teams_read,
                Permission.conversations_read,
                Permission.conversations_write,
                Permission.contacts_read,
                Permission.contacts_write,
                Permission.service_read,
                Permission.service_write,
            }
        ),
    ),
}
