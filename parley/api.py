"""Every router of the application, in one place."""

from fastapi import APIRouter

from parley.auth.endpoints import router as auth_router
from parley.automation.endpoints import router as automation_router
from parley.automation.pages import pages as automation_pages
from parley.channels.endpoints import router as channels_router
from parley.channels.endpoints import webhooks as webhooks_router
from parley.channels.pages import router as channel_pages
from parley.contacts.endpoints import router as contacts_router
from parley.contacts.imports.endpoints import router as contact_imports_router
from parley.contacts.imports.pages import router as contact_import_pages
from parley.contacts.pages import router as contact_pages
from parley.contacts.sync.endpoints import pages as follower_sync_pages
from parley.contacts.sync.endpoints import router as follower_sync_router
from parley.conversations.endpoints import router as conversations_router
from parley.conversations.pages import router as inbox_settings_pages
from parley.delivery.endpoints import pages as delivery_pages
from parley.delivery.endpoints import router as delivery_router
from parley.ops.endpoints import router as ops_router
from parley.realtime.endpoints import router as realtime_router
from parley.routing.endpoints import router as routing_router
from parley.routing.pages import router as routing_pages
from parley.web.endpoints import router as web_router

router = APIRouter()
router.include_router(ops_router)
router.include_router(realtime_router)
router.include_router(auth_router)
router.include_router(channels_router)
router.include_router(conversations_router)
router.include_router(webhooks_router)
router.include_router(web_router)
router.include_router(channel_pages)
router.include_router(inbox_settings_pages)
router.include_router(delivery_router)
router.include_router(delivery_pages)
router.include_router(routing_router)
router.include_router(routing_pages)
router.include_router(contacts_router)
router.include_router(contact_pages)
router.include_router(contact_imports_router)
router.include_router(contact_import_pages)
router.include_router(follower_sync_router)
router.include_router(follower_sync_pages)
router.include_router(automation_router)
router.include_router(automation_pages)
