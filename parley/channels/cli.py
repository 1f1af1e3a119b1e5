"""``parley channel add wechat|whatsapp …`` and ``parley channel list``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from parley.channels.base import ChannelType

channel_app = typer.Typer(help="Connect and list channel accounts.", no_args_is_help=True)
add_app = typer.Typer(help="Connect a channel account; prints its webhook URL.", no_args_is_help=True)
channel_app.add_typer(add_app, name="add")

WECHAT_API = "https://api.weixin.qq.com"
WHATSAPP_API = "https://graph.facebook.com"


def _create(channel_type: ChannelType, name: str, api_base_url: str, credentials: dict[str, Any]) -> None:
    from parley.channels.schemas import ChannelAccountCreate
    from parley.channels.service import channel_account
    from parley.cli import run_with_context
    from parley.exceptions import ParleyError

    async def work(ctx: Any) -> str:
        from parley.db import session_scope

        async with session_scope(ctx.sessionmaker) as session:
            data = ChannelAccountCreate(
                type=channel_type,
                name=name,
                api_base_url=api_base_url,
                credentials=credentials,
            )
            account = await channel_account.create(session, actor=None, box=ctx.secret_box, data=data)
            account = await channel_account.get(session, account.id)
            read = channel_account.read(account, box=ctx.secret_box, base_url=ctx.settings.base_url)
            return f"Connected {read.type.value} account “{read.name}” ({read.id}).\nWebhook URL: {read.webhook_url}"

    try:
        typer.echo(run_with_context(work))
    except ParleyError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@add_app.command("wechat")
def add_wechat(
    name: Annotated[str, typer.Option(help="Shown to agents, e.g. 'Chongqing service account'")],
    app_id: Annotated[str, typer.Option(help="AppID (wx…)")],
    app_secret: Annotated[str, typer.Option(help="AppSecret")],
    token: Annotated[str, typer.Option(help="The Token configured for the server URL")],
    encoding_aes_key: Annotated[str, typer.Option(help="EncodingAESKey (43 characters)")] = "",
    encryption_mode: Annotated[str, typer.Option(help="plain, compatible or safe")] = "safe",
    original_id: Annotated[str, typer.Option(help="Original id (gh_…)")] = "",
    api_base_url: Annotated[str, typer.Option(help="The platform API, or a simulator")] = WECHAT_API,
) -> None:
    """Connect a WeChat Official Account."""
    credentials: dict[str, Any] = {
        "app_id": app_id,
        "app_secret": app_secret,
        "token": token,
        "encryption_mode": encryption_mode,
    }
    if encoding_aes_key:
        credentials["encoding_aes_key"] = encoding_aes_key
    if original_id:
        credentials["original_id"] = original_id
    _create(ChannelType.wechat, name, api_base_url, credentials)


@add_app.command("whatsapp")
def add_whatsapp(
    name: Annotated[str, typer.Option(help="Shown to agents")],
    phone_number_id: Annotated[str, typer.Option(help="Phone number id of the primary sender")],
    business_account_id: Annotated[str, typer.Option(help="WhatsApp Business Account id")],
    access_token: Annotated[str, typer.Option(help="System-user access token")],
    app_secret: Annotated[str, typer.Option(help="App secret (signs webhooks)")],
    verify_token: Annotated[str, typer.Option(help="Webhook verify token")],
    api_base_url: Annotated[str, typer.Option(help="The Graph API, or a simulator")] = WHATSAPP_API,
) -> None:
    """Connect a WhatsApp Business (Cloud API) account."""
    _create(
        ChannelType.whatsapp,
        name,
        api_base_url,
        {
            "phone_number_id": phone_number_id,
            "business_account_id": business_account_id,
            "access_token": access_token,
            "app_secret": app_secret,
            "verify_token": verify_token,
        },
    )


@channel_app.command("list")
def list_accounts() -> None:
    """List connected channel accounts with their webhook URLs."""
    from parley.channels.service import channel_account
    from parley.cli import run_with_context

    async def work(ctx: Any) -> list[str]:
        from parley.db import session_scope

        async with session_scope(ctx.sessionmaker, write=False) as session:
            rows = []
            for account in await channel_account.list_accounts(session):
                read = channel_account.read(account, box=ctx.secret_box, base_url=ctx.settings.base_url)
                state = "active" if read.is_active else "inactive"
                rows.append(
                    f"{read.type.value:<9} {read.name:<30} {read.external_id:<20} {state:<8} {read.webhook_url}"
                )
            return rows

    rows = run_with_context(work)
    if not rows:
        typer.echo("No channel accounts yet. Connect one with `parley channel add wechat|whatsapp`.")
    for row in rows:
        typer.echo(row)
