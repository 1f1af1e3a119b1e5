"""Every ORM model, imported here so that Alembic and the mappers see them all."""

from parley.models.api_token import APIToken
from parley.models.audit_log import AuditLog
from parley.models.base import Base
from parley.models.channel_account import ChannelAccount, ChannelSender
from parley.models.contact import (
    AttributeDefinition,
    AttributeType,
    Contact,
    ContactIdentity,
    ContactTag,
    IdentityKind,
    Tag,
    TagGroup,
    TimelineEvent,
)
from parley.models.conversation import Conversation, ConversationStatus
from parley.models.inbound_event import InboundEvent
from parley.models.inbox_settings import AppSetting, CannedResponse, ContactReason
from parley.models.login_attempt import LoginAttempt
from parley.models.message import Direction, Message, MessageStatus, Priority
from parley.models.platform_token import PlatformToken
from parley.models.role import Role
from parley.models.segment import ContactAttributeValue, ContactMerge, Segment
from parley.models.team import Team, team_members
from parley.models.user import User
from parley.models.user_session import UserSession

__all__ = [
    "APIToken",
    "AppSetting",
    "AttributeDefinition",
    "AttributeType",
    "AuditLog",
    "Base",
    "CannedResponse",
    "ChannelAccount",
    "ChannelSender",
    "Contact",
    "ContactAttributeValue",
    "ContactIdentity",
    "ContactMerge",
    "ContactReason",
    "ContactTag",
    "Conversation",
    "ConversationStatus",
    "Direction",
    "IdentityKind",
    "InboundEvent",
    "LoginAttempt",
    "Message",
    "MessageStatus",
    "PlatformToken",
    "Priority",
    "Role",
    "Segment",
    "Tag",
    "TagGroup",
    "Team",
    "TimelineEvent",
    "User",
    "UserSession",
    "team_members",
]

# Delivery (issue 4): the outbox and the shared flow-control state.
from parley.models.outbox_job import (
    DeliveryLimit,
    FlowBucket,
    FlowQuotaUsage,
    OutboxJob,
    OutboxJobStatus,
)

__all__ += ["DeliveryLimit", "FlowBucket", "FlowQuotaUsage", "OutboxJob", "OutboxJobStatus"]

# Routing (issue 7): queues, members, entry rules, capacity and queue entries.
from parley.models.routing import (  # noqa: E402
    EntryRule,
    EntryStatus,
    QueueEntry,
    QueueMember,
    RoleCapacity,
    RoutingAgent,
    RoutingQueue,
    Strategy,
)

__all__ += [
    "EntryRule",
    "EntryStatus",
    "QueueEntry",
    "QueueMember",
    "RoleCapacity",
    "RoutingAgent",
    "RoutingQueue",
    "Strategy",
]

# Contact import and follower sync (issue 6, item 5).
from parley.models.contact_import import (  # noqa: E402
    ContactImport,
    ContactImportFile,
    ContactImportRejection,
    FollowerSync,
    ImportStatus,
    SyncStatus,
)

__all__ += [
    "ContactImport",
    "ContactImportFile",
    "ContactImportRejection",
    "FollowerSync",
    "ImportStatus",
    "SyncStatus",
]

# Automation (issue 8): replies, flows, menus.
from parley.models.automation import (  # noqa: E402
    AutoReplyRule,
    Flow,
    FlowRun,
    FlowStep,
    FlowVersion,
    KbArticle,
    KbCategory,
    Menu,
    UnmatchedText,
)

__all__ += [
    "AutoReplyRule",
    "Flow",
    "FlowRun",
    "FlowStep",
    "FlowVersion",
    "KbArticle",
    "KbCategory",
    "Menu",
    "UnmatchedText",
]
