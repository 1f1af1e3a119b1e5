"""``/ws``: the console's live connection."""

from __future__ import annotations

from urllib.parse import urlparse

from fastapi import APIRouter, WebSocket

from parley.auth import service as auth_service
from parley.context import Context
from parley.realtime.hub import Connection
from parley.realtime.service import hub_of

router = APIRouter()


@router.websocket("/ws")
async def console_socket(websocket: WebSocket) -> None:
    ctx: Context = websocket.app.state.ctx
    # Browsers send cookies on cross-site websocket handshakes; only our own pages may connect.
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host", "")
    if origin and urlparse(origin).netloc != host:
        # Accept, then close with a code the page's script can read (a refused
        # handshake only shows up as a generic error in browsers).
        await websocket.accept()
        await websocket.close(code=4403, reason="cross-site websocket refused")
        return
    token = websocket.cookies.get(ctx.settings.session_cookie_name)
    principal = None
    if token:
        async with ctx.sessionmaker() as session:
            row = await auth_service.user_session.resolve(session, token)
            if row is not None:
                permissions = await auth_service.user.permissions_of(session, row.user)
                principal = (row.user.id, permissions)
    if principal is None:
        await websocket.accept()
        await websocket.close(code=4401, reason="sign in first")
        return
    await websocket.accept()
    user_id, permissions = principal
    await hub_of(ctx).serve(Connection(websocket=websocket, user_id=user_id, permissions=permissions))
