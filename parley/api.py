"""Every router of the application, in one place."""

from fastapi import APIRouter

from parley.auth.endpoints import router as auth_router
from parley.ops.endpoints import router as ops_router
from parley.web.endpoints import router as web_router

router = APIRouter()
router.include_router(ops_router)
router.include_router(auth_router)
router.include_router(web_router)
