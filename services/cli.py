"""``passpost``: set up, run and administer the services."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from services.apns_standin import main as run_apns_standin
from services.core.db import create_engine, create_sessionmaker
from services.core.dbfaults import DRIVER_ERRORS, check_writable, describe
from services.core.errors import PasspostError
from services.core.http import BoundedHttpProtocol
from services.core.logging import configure_logging
from services.core.migrations import upgrade_to_head
from services.core.settings import Environment, Settings, get_settings
from services.core.web import Component
from services.core.workers import WorkerPool
from services.integrations.google_wallet.auth import AccessTokens, ServiceAccount
from services.integrations.google_wallet.client import GoogleWalletClient, GoogleWalletError
from services.merchants import google_wallet, journeys, marketing
from services.merchants import service as merchants
from services.merchants.schemas import MerchantCreate, MerchantRead
from services.onboarding import development_wallet_orders, onboard_merchant
from services.orders.connectors import service as connectors
from services.orders.connectors.common import Platform
from services.orders.connectors.schemas import ConnectorConfigure, MappingSet
from services.passes import changes, designs, issuing, locations
from services.passes import google_wallet as card_google_wallet
from services.passes.apple.devchain import ensure_dev_chain
from services.passes.schemas import AppleSettings, Branding, CardIssue, StoreLocations
from services.passes.wallet_orders import settings as order_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
merchants_app = typer.Typer(help="Merchants and their API keys.", no_args_is_help=True)
designs_app = typer.Typer(
    help="A merchant's pass design: Apple settings, branding, images.", no_args_is_help=True
)
locations_app = typer.Typer(
    help="A merchant's stores (at most 10): near one, the card comes up on the lock screen.",
    no_args_is_help=True,
)
cards_app = typer.Typer(help="Customer cards.", no_args_is_help=True)
google_app = typer.Typer(help="Google Wallet for a merchant.", no_args_is_help=True)
offers_app = typer.Typer(help="A merchant's offers and coupons.", no_args_is_help=True)
campaigns_app = typer.Typer(help="The campaigns that deliver offers.", no_args_is_help=True)
connectors_app = typer.Typer(
    help="Shopify, WooCommerce and Shoptet webhooks straight to the card.", no_args_is_help=True
)
journeys_app = typer.Typer(
    help="A merchant's journeys: triggered messages on the card.", no_args_is_help=True
)
app.add_typer(merchants_app, name="merchants")
app.add_typer(designs_app, name="designs")
designs_app.add_typer(locations_app, name="locations")
app.add_typer(cards_app, name="cards")
app.add_typer(google_app, name="google")
app.add_typer(offers_app, name="offers")
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(connectors_app, name="connectors")
app.add_typer(journeys_app, name="journeys")

T = TypeVar("T")
DEMO_SLUG = "demo"
DEMO_FILE = "demo.json"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        _fail("; ".join(str(e["msg"]) for e in exc.errors()))


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction, turning domain and database errors into clean messages."""

    async def main() -> T:
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine, settings)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except PasspostError as exc:
        _fail(exc.message)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except DRIVER_ERRORS as exc:
        _fail(f"cannot use the database {_where(settings)}: {describe(exc)}")


def _where(settings: Settings) -> str:
    """The database's URL without its credentials."""
    return settings.resolved_database_url.split("@")[-1]


def _merchant_json(merchant: Any) -> dict[str, Any]:
    return MerchantRead.model_validate(merchant).model_dump(mode="json")


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest version (the prestart step)."""
    settings = _settings()
    try:
        upgrade_to_head(settings)
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(f"cannot migrate {_where(settings)}: {describe(exc)}")
    typer.echo("database is at the latest schema", err=True)


@app.command()
def init() -> None:
    """Set up a working installation: keys, schema, admin token, and a demo merchant."""
    settings = _settings()
    if settings.environment != Environment.production:
        ensure_dev_chain(settings.keys_dir)
    migrate()
    admin_token = settings.ensure_admin_token()
    demo_file = settings.data_dir / DEMO_FILE

    async def work(session: AsyncSession) -> dict[str, Any]:
        try:
            merchant = await merchants.get_merchant_by_slug(session, DEMO_SLUG)
        except PasspostError:
            onboarded = await onboard_merchant(
                session,
                settings,
                MerchantCreate(slug=DEMO_SLUG, name="Passpost Demo Shop"),
                branding=Branding(
                    support_phone="+421 2 1234 5678",
                    order_url_template="https://shop.example.com/orders/{order_id}",
                    tracking_url_template="https://track.example.com/{tracking_number}",
                    returns_url_template="https://shop.example.com/returns?order={order_number}",
                    account_url_template="https://shop.example.com/account",
                ),
            )
            merchant, api_key = onboarded.merchant, onboarded.api_key
        else:
            saved = json.loads(demo_file.read_text()) if demo_file.exists() else {}
            api_key = saved.get("api_key") or await merchants.create_api_key(session, merchant)
        if settings.environment != Environment.production and not merchant.order_type_identifier:
            await development_wallet_orders(session, settings, merchant)
        problems = await designs.check_designs(session)
        if problems:
            _fail("\n  ".join(["the configuration has problems:", *problems]))
        return {"merchant": _merchant_json(merchant), "api_key": api_key}

    result = _in_transaction(settings, work)
    _write_private(demo_file, json.dumps({"api_key": result["api_key"]}))
    _print(
        {
            **result,
            "admin_token": admin_token,
            "data_dir": str(settings.data_dir.resolve()),
            "public_base_url": settings.base_url(),
        }
    )


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text + "\n")


class ServiceName(StrEnum):
    all = "all"
    orders = "orders"
    offers = "offers"
    passes = "passes"
    push = "push"
    admin = "admin"


STANDIN_PORT = 2197
SERVED_SERVICE_ENV = "PASSPOST_SERVED_SERVICE"
"""How ``serve --workers N`` tells its worker processes which service to build."""


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")] = ServiceName.all,
    host: Annotated[str | None, typer.Option(help="Default: PASSPOST_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: PASSPOST_PORT.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes sharing the port, each with a listening socket of its own "
            "(SO_REUSEPORT: the kernel spreads connections evenly) and each a whole copy of "
            "the service (its queue consumers and push workers included: leases keep them "
            "from doing work twice). /metrics of any of them shows the whole group.",
        ),
    ] = 1,
    apns_standin: Annotated[
        bool, typer.Option(help="Run the local APNs stand-in in this process and push to it.")
    ] = False,
) -> None:
    """Serve one service, or all three in one process (or in each of ``--workers`` processes)."""
    import uvicorn

    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    extra: list[Component] = []
    if apns_standin:
        if settings.environment == Environment.production:
            _fail("--apns-standin is for development; production pushes go to Apple")
        if workers > 1:
            _fail("--apns-standin binds its own port, so it runs with one worker only")
        chain = ensure_dev_chain(settings.keys_dir)
        settings = settings.model_copy(
            update={
                "apns_url": f"https://127.0.0.1:{STANDIN_PORT}",
                "apns_ca_file": chain.root_certificate,
            }
        )
        extra.append(_standin_component(settings))
    # The database must take writes (refused otherwise, with the cause); one merchant's broken
    # material stops only its own passes (503): said, not refused.
    for problem in _in_transaction(settings, _ready_to_serve):
        typer.echo(f"warning: {problem}; its passes answer 503 until it is fixed", err=True)
    host, port = host or settings.host, port or settings.port
    typer.echo(
        f"passpost {service.value} on http://{host}:{port}  (API docs: /docs, health: /healthz, "
        f"metrics: /metrics; links start with {settings.base_url()})",
        err=True,
    )
    options = server_options(settings, host, port)
    if workers > 1:
        # Each worker is a fresh process that imports the app factory by name.
        os.environ[SERVED_SERVICE_ENV] = service.value
        try:
            WorkerPool(f"{__name__}:{web_app.__name__}", workers, options).run()
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    else:
        uvicorn.run(_build_app(settings, service, extra), **options)


def server_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    """What every uvicorn server of ``serve`` is made with (one, or each of ``--workers``)."""
    return {
        "host": host,
        "port": port,
        "log_config": None,
        "proxy_headers": True,
        "server_header": False,
        # Bounds on each request's head: its time, its size, its number of headers.
        "http": functools.partial(BoundedHttpProtocol, header_timeout=settings.http_header_timeout),
        # SIGTERM: requests in flight get this long; then the lifespan's shutdown as long.
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }


def web_app() -> FastAPI:
    """The app of one ``serve --workers N`` worker, built from the environment it inherited."""
    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    return _build_app(settings, ServiceName(os.environ.get(SERVED_SERVICE_ENV, "all")), [])


def _build_app(settings: Settings, service: ServiceName, extra: list[Component]) -> FastAPI:
    from services.core.web import create_app

    return create_app(settings, [*extra, *components_of(service, settings)])


def components_of(service: ServiceName, settings: Settings) -> list[Component]:
    """What ``serve SERVICE`` runs. The admin API comes with the passes service too, where a
    split deployment has always found it, and alone with ``serve admin`` (the connectors' admin
    routes, which the orders service owns, with it); the offers API with
    the orders API (both are the shop's, under ``/v1``), and alone with ``serve offers``."""
    from services.admin.app import component as admin_component
    from services.offers.app import component as offers_component
    from services.orders.app import admin_component as orders_admin
    from services.orders.app import component as orders_component
    from services.passes.app import component as passes_component
    from services.push.app import component as push_component

    chosen = {
        ServiceName.orders: [orders_component(settings), offers_component(settings)],
        ServiceName.offers: [offers_component(settings)],
        ServiceName.passes: [
            passes_component(settings),
            admin_component(settings),
            orders_admin(settings),
        ],
        ServiceName.push: [push_component(settings)],
        ServiceName.admin: [admin_component(settings), orders_admin(settings)],
    }.get(service) or [
        orders_component(settings),
        offers_component(settings),
        passes_component(settings),
        push_component(settings),
        admin_component(settings),
        orders_admin(settings),
    ]
    return chosen


def _standin_component(settings: Settings) -> Component:
    chain = ensure_dev_chain(settings.keys_dir)

    async def run(_app: Any) -> None:
        await run_apns_standin(
            "127.0.0.1",
            STANDIN_PORT,
            chain.apns_standin_certificate,
            chain.apns_standin_key,
            chain.client_ca_bundle,
        )

    return Component(name="apns-standin", tasks=[run])


@app.command("apns-mock")
def apns_mock(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = STANDIN_PORT,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Append one JSON line per push to this file (token suffix, apns-id, status, "
            "time), for tests and tools in another process."
        ),
    ] = None,
) -> None:
    """Run the local APNs stand-in (HTTP/2 over TLS), logging every push it receives.

    Point the push service at it with PASSPOST_APNS_URL=https://127.0.0.1:2197 and
    PASSPOST_APNS_CA_FILE=var/keys/dev-root.pem.
    """
    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    chain = ensure_dev_chain(settings.keys_dir)
    typer.echo(f"APNs stand-in on https://{host}:{port}", err=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.suppress(KeyboardInterrupt))
        lines = stack.enter_context(record.open("a")) if record is not None else None
        asyncio.run(
            run_apns_standin(
                host,
                port,
                chain.apns_standin_certificate,
                chain.apns_standin_key,
                chain.client_ca_bundle,
                record=lines,
            )
        )


@app.command()
def check() -> None:
    """Check every merchant's signing material and images; exit 2 on any problem."""
    settings = _settings()
    problems = _in_transaction(settings, _ready_to_serve)
    if problems:
        _fail("\n  ".join(["the configuration has problems:", *problems]))
    typer.echo("configuration ok", err=True)


async def _ready_to_serve(session: AsyncSession) -> list[str]:
    """The database takes writes, and every merchant's signing material and images are usable
    (the problems with them, if any)."""
    await check_writable(session)
    return await designs.check_designs(session)


Slug = Annotated[str, typer.Option("--merchant", help="The merchant's slug.")]


@merchants_app.command("create")
def merchants_create(
    slug: Annotated[str, typer.Option(help="Short unique name: lowercase letters, digits, -")],
    name: Annotated[str, typer.Option(help="The shop's name as customers know it.")],
    locale: Annotated[str, typer.Option(help="Default language of the cards.")] = "en",
    pass_type_id: Annotated[str | None, typer.Option(help="Apple pass type id.")] = None,
    team_id: Annotated[str | None, typer.Option(help="Apple team id.")] = None,
    certificate: Annotated[Path | None, typer.Option(help="Pass type certificate.")] = None,
    key: Annotated[Path | None, typer.Option(help="Its private key (PEM or DER).")] = None,
    wwdr: Annotated[Path | None, typer.Option(help="Apple WWDR G4 intermediate.")] = None,
) -> None:
    """Create a merchant and its first API key (shown once). Without Apple settings, a
    development certificate is made for it (not in production)."""
    settings = _settings()
    apple_options = [pass_type_id, team_id, certificate, key, wwdr]
    if any(o is not None for o in apple_options) and not all(o is not None for o in apple_options):
        _fail("give all of --pass-type-id, --team-id, --certificate, --key, --wwdr, or none")

    async def work(session: AsyncSession) -> dict[str, Any]:
        apple = None
        if pass_type_id is not None:
            apple = AppleSettings(
                pass_type_identifier=pass_type_id,
                team_identifier=team_id or "",
                certificate_path=str(certificate),
                key_path=str(key),
                wwdr_path=str(wwdr),
            )
        onboarded = await onboard_merchant(
            session, settings, MerchantCreate(slug=slug, name=name, default_locale=locale), apple
        )
        return {
            "merchant": _merchant_json(onboarded.merchant),
            "api_key": onboarded.api_key,
            "pass_type_identifier": onboarded.design.pass_type_identifier,
        }

    _print(_in_transaction(settings, work))


@merchants_app.command("list")
def merchants_list() -> None:
    """List merchants."""
    settings = _settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_merchant_json(m) for m in await merchants.list_merchants(session)]

    _print(_in_transaction(settings, work))


@merchants_app.command("api-key")
def merchants_api_key(
    merchant_slug: Slug,
    revoke_others: Annotated[bool, typer.Option(help="Revoke every earlier key.")] = False,
) -> None:
    """Make a new API key for a merchant (shown once)."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        revoked = await merchants.revoke_api_keys(session, merchant) if revoke_others else 0
        return {
            "merchant": merchant.slug,
            "api_key": await merchants.create_api_key(session, merchant),
            "revoked": revoked,
        }

    _print(_in_transaction(settings, work))


@merchants_app.command("signing-secret")
def merchants_signing_secret(
    merchant_slug: Slug,
    disable: Annotated[bool, typer.Option(help="Stop requiring signed order events.")] = False,
) -> None:
    """Require signed order events (Passpost-Signature) with a new secret, shown once."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        secret = await merchants.rotate_signing_secret(session, merchant, enable=not disable)
        return {"merchant": merchant.slug, "signing_secret": secret}

    _print(_in_transaction(settings, work))


PlatformOption = Annotated[Platform, typer.Option("--platform", help="The shop's platform.")]


@connectors_app.command("configure")
def connectors_configure(
    merchant_slug: Slug,
    platform: PlatformOption,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="The secret the platform signs webhooks with. Give it twice (old, then new) "
            "during a rotation; a new one alone keeps the old one too until --revoke-old."
        ),
    ] = None,
    api_token: Annotated[
        str | None, typer.Option(help="Shoptet: the shop's API access token.")
    ] = None,
    revoke_old: Annotated[bool, typer.Option(help="Stop accepting the previous secret.")] = False,
) -> None:
    """Connect a merchant's shop: prints the webhook URL to give the platform. Secrets and
    tokens are stored and never shown again."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        body = ConnectorConfigure(
            secrets=secret or None, api_token=api_token, revoke_old=revoke_old
        )
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        connector = await connectors.configure(session, merchant, platform, body)
        return connectors.connector_read(connector, merchant, settings).model_dump(mode="json")

    _print(_in_transaction(settings, work))


@connectors_app.command("map")
def connectors_map(
    merchant_slug: Slug,
    platform: PlatformOption,
    source: Annotated[
        str, typer.Option("--from", help="The platform's status (a Shoptet status id).")
    ],
    to: Annotated[str, typer.Option(help="Ours: placed, confirmed, ..., refunded.")],
) -> None:
    """Map one of the platform's statuses to ours, over the platform's table."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        mapping = MappingSet.model_validate({"from": source, "to": to})
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        connector = await connectors.set_mapping(
            session, merchant, platform, mapping.source, mapping.to.value
        )
        return connectors.connector_read(connector, merchant, settings).model_dump(mode="json")

    _print(_in_transaction(settings, work))


@merchants_app.command("marketing")
def merchants_marketing(
    merchant_slug: Slug,
    daily_cap: Annotated[
        int | None, typer.Option(help="Marketing notifications per card a day (default 1).")
    ] = None,
    weekly_cap: Annotated[
        int | None, typer.Option(help="... and in any 7 days (default 3).")
    ] = None,
    quiet_hours: Annotated[
        str | None,
        typer.Option(help="No marketing notifications then, e.g. 21:00-08:00 (the default)."),
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option(help="IANA zone for customers whose orders name none (default UTC)."),
    ] = None,
) -> None:
    """Show a merchant's marketing settings, changing those given first."""
    settings = _settings()
    given: dict[str, Any] = {"daily_cap": daily_cap, "weekly_cap": weekly_cap}
    if quiet_hours is not None:
        try:
            given["quiet_start"], given["quiet_end"] = marketing.quiet_hours(quiet_hours)
        except ValueError as exc:
            _fail(f"--quiet-hours: {exc}")
    given["time_zone"] = time_zone

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        change = marketing.MarketingChange.model_validate(
            {name: value for name, value in given.items() if value is not None}
        )
        if change.changes():
            current = await marketing.update_marketing(session, merchant, change.changes())
        else:
            current = marketing.settings_of(merchant)
        return {"merchant": merchant.slug, "marketing": current.model_dump(mode="json")}

    _print(_in_transaction(settings, work))


@journeys_app.command("list")
def journeys_list(
    merchant_slug: Annotated[str, typer.Option("--merchant", help="The merchant's slug.")],
) -> None:
    """Every journey of a merchant with its settings (defaults where never set)."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        return {
            "merchant": merchant.slug,
            "journeys": {
                name: current.model_dump(mode="json")
                for name, current in journeys.journeys_of(merchant).items()
            },
        }

    _print(_in_transaction(settings, work))


@journeys_app.command("set")
def journeys_set(
    merchant_slug: Annotated[str, typer.Option("--merchant", help="The merchant's slug.")],
    journey: Annotated[str, typer.Option(help=f"One of {', '.join(journeys.JOURNEYS)}.")],
    enabled: Annotated[
        bool | None, typer.Option("--on/--off", help="Switch the journey on or off.")
    ] = None,
    delay_days: Annotated[int | None, typer.Option(help="The delay in days.")] = None,
    delay_hours: Annotated[int | None, typer.Option(help="... or in hours.")] = None,
    delay_minutes: Annotated[int | None, typer.Option(help="... or in minutes.")] = None,
    valid_days: Annotated[
        int | None, typer.Option(help="Days the message stays on the card.")
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option(help="The journey's words in a language: LOCALE=TITLE|TEXT (repeatable)."),
    ] = None,
    offer_code: Annotated[
        str | None, typer.Option(help="The coupon code the message brings.")
    ] = None,
    offer_valid_days: Annotated[int, typer.Option(help="Days the coupon is valid.")] = 7,
    no_offer: Annotated[bool, typer.Option(help="The message brings no coupon.")] = False,
    url: Annotated[str | None, typer.Option(help="The journey's link.")] = None,
    after_orders: Annotated[
        int | None, typer.Option(help="loyalty: after this many delivered orders.")
    ] = None,
    refill: Annotated[
        list[str] | None,
        typer.Option(
            help="refill: a product's days after delivery, PRODUCT_ID=DAYS (repeatable;"
            " 0 days forgets the product)."
        ),
    ] = None,
) -> None:
    """Change one journey of a merchant (what is not given stays), then show it."""
    settings = _settings()
    if journey not in journeys.JOURNEYS:
        _fail(f"--journey: one of {', '.join(journeys.JOURNEYS)}")
    delays = [d for d in (delay_days, delay_hours, delay_minutes) if d is not None]
    if len(delays) > 1:
        _fail("give the delay once: --delay-days, --delay-hours or --delay-minutes")
    given: dict[str, Any] = {"enabled": enabled, "valid_days": valid_days, "url": url}
    given["after_orders"] = after_orders
    if delay_days is not None:
        given["delay_minutes"] = delay_days * journeys.MINUTES_A_DAY
    elif delay_hours is not None:
        given["delay_minutes"] = delay_hours * 60
    else:
        given["delay_minutes"] = delay_minutes
    if offer_code is not None:
        given["offer"] = {"code": offer_code, "valid_days": offer_valid_days}
    changes = {name: value for name, value in given.items() if value is not None}
    if no_offer:
        changes["offer"] = None
    name: journeys.JourneyName = journey

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        texts = dict(journeys.journeys_of(merchant)[name].texts)
        for value in text or []:
            try:
                locale, words = journeys.parse_text(value)
            except ValueError as exc:
                _fail(f"--text: {exc}")
            texts[locale] = words
        if text:
            changes["texts"] = {k: v.model_dump() for k, v in texts.items()}
        if refill:
            changes["products"] = _refill_days(journeys.journeys_of(merchant)[name], refill)
        try:
            change = journeys.JourneyChange.model_validate(changes)
            current = await journeys.update_journey(session, merchant, name, change.changes())
        except ValidationError as exc:
            error = exc.errors()[0]
            _fail(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}")
        return {"merchant": merchant.slug, "journey": name, **current.model_dump(mode="json")}

    _print(_in_transaction(settings, work))


def _refill_days(current: journeys.JourneySettings, given: list[str]) -> dict[str, int]:
    """The journey's products with ``PRODUCT_ID=DAYS`` applied (0 days: the product left)."""
    products = dict(current.products)
    for value in given:
        product, separator, days = value.rpartition("=")
        if not separator or not product or not days.isdigit():
            _fail(f"--refill: PRODUCT_ID=DAYS, such as tea-green=30 (not {value!r})")
        if int(days):
            products[product] = int(days)
        else:
            products.pop(product, None)
    return products


@designs_app.command("apple")
def designs_apple(
    merchant_slug: Slug,
    pass_type_id: Annotated[str, typer.Option()],
    team_id: Annotated[str, typer.Option()],
    certificate: Annotated[Path, typer.Option()],
    key: Annotated[Path, typer.Option()],
    wwdr: Annotated[Path, typer.Option()],
) -> None:
    """Set (or replace) a merchant's Apple signing material; checked before it is saved."""
    settings = _settings()
    apple = AppleSettings(
        pass_type_identifier=pass_type_id,
        team_identifier=team_id,
        certificate_path=str(certificate.resolve()),
        key_path=str(key.resolve()),
        wwdr_path=str(wwdr.resolve()),
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        try:
            design = await designs.get_design(session, merchant)
        except PasspostError:
            design = await designs.create_design(session, merchant, apple)
        else:
            await designs.update_apple(session, merchant, design, apple)
        return {"merchant": merchant.slug, "pass_type_identifier": design.pass_type_identifier}

    _print(_in_transaction(settings, work))


@designs_app.command("apple-orders")
def designs_apple_orders(
    merchant_slug: Slug,
    order_type_id: Annotated[
        str | None, typer.Option(help="Apple Order Type ID, e.g. order.com.shop.")
    ] = None,
    certificate: Annotated[Path | None, typer.Option(help="Order Type ID certificate.")] = None,
    key: Annotated[Path | None, typer.Option(help="Its private key (PEM or DER).")] = None,
    merchant_identifier: Annotated[
        str | None,
        typer.Option(help="Apple Merchant ID for order.json (default: merchant.<order type>)."),
    ] = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Switch Wallet Orders on or off.")
    ] = None,
) -> None:
    """Set a merchant's Apple Wallet Orders material (checked before it is saved), and switch
    Wallet Orders on or off."""
    settings = _settings()
    given = (order_type_id, certificate, key)
    if any(value is not None for value in given) and not all(v is not None for v in given):
        _fail("--order-type-id, --certificate and --key go together")

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        if order_type_id is not None and certificate is not None and key is not None:
            await order_settings.configure(
                session,
                merchant,
                design,
                order_settings.WalletOrdersSettings(
                    order_type_id, certificate, key, merchant_identifier
                ),
                enable=enable,
            )
        elif enable is not None:
            order_settings.switch(merchant, design, enable=enable)
        else:
            _fail("nothing to do: give the Order Type ID material, --enable or --disable")
        await session.flush()
        return {
            "merchant": merchant.slug,
            "order_type_identifier": merchant.order_type_identifier,
            "wallet_orders": merchant.wallet_orders_enabled,
        }

    _print(_in_transaction(settings, work))


@designs_app.command("apns-key")
def designs_apns_key(
    merchant_slug: Slug,
    key: Annotated[Path, typer.Option(help="The .p8 key from Apple's developer portal.")],
    key_id: Annotated[str, typer.Option(help="Its 10-character key id.")],
) -> None:
    """Push with a token key instead of the pass type certificate."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        await designs.set_apns_token_key(session, merchant, design, key, key_id)
        return {"merchant": merchant.slug, "apns_auth": "token", "key_id": key_id}

    _print(_in_transaction(settings, work))


@designs_app.command("branding")
def designs_branding(
    merchant_slug: Slug,
    organization_name: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    logo_text: Annotated[str | None, typer.Option()] = None,
    foreground_color: Annotated[str | None, typer.Option(help="#RRGGBB")] = None,
    background_color: Annotated[str | None, typer.Option(help="#RRGGBB")] = None,
    label_color: Annotated[str | None, typer.Option(help="#RRGGBB")] = None,
    support_phone: Annotated[str | None, typer.Option()] = None,
    order_url: Annotated[
        str | None, typer.Option(help="May use {order_id}, {order_number}")
    ] = None,
    tracking_url: Annotated[str | None, typer.Option(help="May use {tracking_number}")] = None,
    returns_url: Annotated[str | None, typer.Option()] = None,
    account_url: Annotated[str | None, typer.Option()] = None,
    review_url: Annotated[
        str | None, typer.Option(help="Offered after a rating of 9-10; may use {order_id}")
    ] = None,
    survey_url: Annotated[
        str | None, typer.Option(help="Offered after a rating of 0-6; may use {order_id}")
    ] = None,
) -> None:
    """Change how a merchant's cards look and where their links lead."""
    settings = _settings()
    given = {
        "organization_name": organization_name,
        "description": description,
        "logo_text": logo_text,
        "foreground_color": foreground_color,
        "background_color": background_color,
        "label_color": label_color,
        "support_phone": support_phone,
        "order_url_template": order_url,
        "tracking_url_template": tracking_url,
        "returns_url_template": returns_url,
        "account_url_template": account_url,
        "review_url_template": review_url,
        "survey_url_template": survey_url,
    }

    async def work(session: AsyncSession) -> dict[str, Any]:
        branding = Branding.model_validate({k: v for k, v in given.items() if v is not None})
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        await designs.update_branding(session, design, branding)
        return {"merchant": merchant.slug, "updated": sorted(branding.model_fields_set)}

    _print(_in_transaction(settings, work))


@designs_app.command("text")
def designs_text(
    merchant_slug: Slug,
    locale: Annotated[str, typer.Option(help="en, sk, cs, pl, ru or de.")],
    key: Annotated[str, typer.Option(help="e.g. status.shipped, status.change, back.returns")],
    value: Annotated[str | None, typer.Option(help="The text; leave out to restore ours.")] = None,
) -> None:
    """Word one of the card's texts the merchant's way (status.change needs %@)."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        await designs.set_text(session, design, locale, key, value)
        return {"merchant": merchant.slug, "texts": design.texts}

    _print(_in_transaction(settings, work))


@designs_app.command("image")
def designs_image(
    merchant_slug: Slug,
    name: Annotated[str, typer.Option(help="icon.png, icon@2x.png, logo@3x.png, ...")],
    file: Annotated[Path, typer.Argument(help="A PNG file.")],
) -> None:
    """Set one image of a merchant's card."""
    settings = _settings()
    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        await designs.set_image(session, design, name, data)
        return {"merchant": merchant.slug, "image": name, "bytes": len(data)}

    _print(_in_transaction(settings, work))


@locations_app.command("set")
def designs_locations_set(
    merchant_slug: Slug,
    file: Annotated[
        Path,
        typer.Argument(
            help='A JSON list of stores: [{"latitude": 48.1486, "longitude": 17.1077, '
            '"relevant_text": {"en": "Our store is nearby"}}, ...]; - reads standard input.'
        ),
    ],
) -> None:
    """Replace a merchant's stores; every card gets a new version carrying them, silently."""
    settings = _settings()
    try:
        given = json.loads(sys.stdin.read() if str(file) == "-" else file.read_text())
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")

    async def work(session: AsyncSession) -> dict[str, Any]:
        stores = StoreLocations.model_validate({"locations": given})
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        await locations.set_locations(session, design, stores.locations)
        return {"merchant": merchant.slug, "locations": design.locations}

    _print(_in_transaction(settings, work))


@locations_app.command("list")
def designs_locations_list(merchant_slug: Slug) -> None:
    """A merchant's stores as its cards carry them."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        design = await designs.get_design(session, merchant)
        return {"merchant": merchant.slug, "locations": design.locations or []}

    _print(_in_transaction(settings, work))


@locations_app.command("clear")
def designs_locations_clear(merchant_slug: Slug) -> None:
    """No stores on a merchant's cards any more."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        await locations.set_locations(session, await designs.get_design(session, merchant), [])
        return {"merchant": merchant.slug, "locations": []}

    _print(_in_transaction(settings, work))


@cards_app.command("issue")
def cards_issue(
    merchant_slug: Slug,
    customer: Annotated[str, typer.Option(help="The shop's customer id.")],
    name: Annotated[str | None, typer.Option(help="The customer's name.")] = None,
    locale: Annotated[str | None, typer.Option(help="The customer's language.")] = None,
) -> None:
    """Issue (or look up) a customer's card, without an order."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        data = CardIssue(customer_id=customer, customer_name=name, locale=locale)
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        card = await issuing.issue_card(session, merchant, data, settings.resolved_secret_key())
        return {
            **issuing.links_of(merchant, card, settings).model_dump(),
            "merchant": merchant.slug,
            "customer_id": card.customer_id,
            "version": card.version,
        }

    _print(_in_transaction(settings, work))


@google_app.command("configure")
def google_configure(
    merchant_slug: Slug,
    issuer_id: Annotated[str, typer.Option(help="From the Google Pay & Wallet console.")],
    service_account_file: Annotated[Path, typer.Option(help="The service account's JSON key.")],
    origin: Annotated[
        list[str] | None, typer.Option(help="A shop origin for the save button (repeatable).")
    ] = None,
) -> None:
    """Put a merchant's cards in Google Wallet; existing cards get their objects too."""
    settings = _settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        await google_wallet.configure(
            session,
            merchant,
            issuer_id=issuer_id,
            service_account_file=service_account_file,
            origins=origin or [],
        )
        announced = await changes.announce_all(session, merchant)
        return {"merchant": merchant.slug, "issuer_id": issuer_id, "cards": announced}

    _print(_in_transaction(settings, work))


@google_app.command("sync-class")
def google_sync_class(merchant_slug: Slug) -> None:
    """Create or update the merchant's Loyalty class (the card's look and title)."""
    settings = _settings()

    async def body(session: AsyncSession) -> tuple[str, dict[str, Any]]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        if not google_wallet.enabled(merchant):
            _fail(f"merchant {merchant.slug!r} has no Google settings: run google configure")
        design = await designs.get_design(session, merchant)
        path = str(merchant.google_service_account_path)
        return path, card_google_wallet.class_body(merchant, design, settings)

    path, class_body = _in_transaction(settings, body)

    async def upload() -> dict[str, Any]:
        account = ServiceAccount.from_file(Path(path))
        async with httpx.AsyncClient(timeout=10.0) as http:
            client = GoogleWalletClient(
                AccessTokens(account, http=http), http=http, base_url=settings.google_api_url
            )
            return await client.upsert_class(class_body)

    try:
        result = asyncio.run(upload())
    except GoogleWalletError as exc:
        _fail(f"Google answered {exc.status}: {exc.message}")
    _print(
        {
            "merchant": merchant_slug,
            "class": result.get("id"),
            "review_status": result.get("reviewStatus"),
        }
    )


def _json_object(option: str, given: str | None, example: str) -> dict[str, Any] | None:
    if given is None:
        return None
    try:
        value = json.loads(given)
    except json.JSONDecodeError as exc:
        _fail(f"{option} is not JSON: {exc.msg}")
    if not isinstance(value, dict):
        _fail(f"{option} is a JSON object, such as {example}")
    return value


def _customer_ids(customers: list[str] | None, customers_file: Path | None) -> list[str] | None:
    ids = list(customers or [])
    if customers_file is not None:
        try:
            ids += [line.strip() for line in customers_file.read_text().splitlines()]
        except OSError as exc:
            _fail(f"cannot read {customers_file}: {exc.strerror}")
    return [i for i in ids if i] or None


@offers_app.command("create")
def offers_create(
    merchant_slug: Slug,
    offer_id: Annotated[str, typer.Option("--id", help="Unique per merchant (idempotency key).")],
    title: Annotated[str, typer.Option(help="Short: the card's front, the lock screen.")],
    text: Annotated[str, typer.Option(help="The offer's words, on the card's back.")],
    valid_until: Annotated[str, typer.Option(help="RFC 3339, e.g. 2026-12-31T23:00:00Z")],
    valid_from: Annotated[str | None, typer.Option(help="Start the campaign then.")] = None,
    coupon_code: Annotated[str | None, typer.Option(help="At most 64 printable ASCII.")] = None,
    url: Annotated[str | None, typer.Option(help="A link on the card's back.")] = None,
    customer: Annotated[
        list[str] | None, typer.Option(help="A customer id to target (repeatable).")
    ] = None,
    customers_file: Annotated[
        Path | None, typer.Option(help="Customer ids to target, one a line (at most 10,000).")
    ] = None,
    segment: Annotated[
        str | None, typer.Option(help='A segment as JSON: {"min_orders": 2, "locales": ["sk"]}')
    ] = None,
    texts: Annotated[
        str | None,
        typer.Option(help='The offer\'s own words per language: {"sk": {"title": .., "text": ..}}'),
    ] = None,
    notify: Annotated[bool, typer.Option(help="Notify (within the caps and quiet hours).")] = True,
) -> None:
    """Create an offer and start (or schedule) its campaign, as POST /v1/offers does."""
    from services.core.clock import clock
    from services.offers import service as offers
    from services.offers.schemas import OfferIn

    settings = _settings()
    ids = _customer_ids(customer, customers_file)
    wanted = _json_object("--segment", segment, '{"min_orders": 2, "has_wallet": "any"}')
    if (ids is None) == (wanted is None):
        _fail("give --customer/--customers-file or --segment (one of them)")
    given = {
        "id": offer_id,
        "title": title,
        "text": text,
        "valid_until": valid_until,
        "valid_from": valid_from,
        "coupon_code": coupon_code,
        "url": url,
        "notify": notify,
        "texts": _json_object("--texts", texts, '{"sk": {"title": "...", "text": "..."}}'),
        "target": {"customer_ids": ids} if ids is not None else {"segment": wanted},
    }

    async def work(session: AsyncSession) -> dict[str, Any]:
        offer = OfferIn.model_validate({k: v for k, v in given.items() if v is not None})
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        accepted = await offers.create_offer(session, merchant, offer, clock.now())
        return accepted.model_dump(mode="json")

    _print(_in_transaction(settings, work))


Limit = Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")]


@offers_app.command("list")
def offers_list(merchant_slug: Slug, limit: Limit = 50) -> None:
    """A merchant's offers, newest first."""
    from services.core.clock import clock
    from services.offers import service as offers

    settings = _settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        page = await offers.list_offers(session, merchant, clock.now(), limit, None)
        return [item.model_dump(mode="json") for item in page.items]

    _print(_in_transaction(settings, work))


class CampaignState(StrEnum):
    scheduled = "scheduled"
    running = "running"
    done = "done"
    cancelled = "cancelled"


@campaigns_app.command("list")
def campaigns_list(
    merchant_slug: Slug,
    state: Annotated[CampaignState | None, typer.Option(help="Only these.")] = None,
    limit: Limit = 50,
) -> None:
    """A merchant's campaigns, newest first, with their progress."""
    from services.offers import service as offers

    settings = _settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        chosen = None if state is None else state.value
        page = await offers.list_campaigns(session, merchant, limit, None, chosen)
        return [item.model_dump(mode="json") for item in page.items]

    _print(_in_transaction(settings, work))


@campaigns_app.command("watch")
def campaigns_watch(
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id (campaign_id).")],
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 0.5,
) -> None:
    """A live progress bar of the campaign until it is done or cancelled."""
    from services.offers.watch import watch

    settings = _settings()
    try:
        identifier = uuid.UUID(campaign_id)
    except ValueError:
        _fail(f"{campaign_id!r} is not a campaign id")
    try:
        final = asyncio.run(watch(settings, identifier, interval))
    except PasspostError as exc:
        _fail(exc.message)
    except DBAPIError as exc:
        _fail(f"cannot watch the campaign in {_where(settings)}: {describe(exc)}")
    _print(final)


@app.command("stats")
def stats(
    merchant_slug: Slug,
    first: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First UTC day.")
    ] = None,
    last: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last UTC day.")
    ] = None,
) -> None:
    """The channel's numbers for a merchant over a period (default: the last 30 days), as
    GET /v1/stats answers them."""
    from services.core.clock import clock
    from services.offers import service as offers
    from services.offers.router import DEFAULT_STATS_PERIOD

    settings = _settings()
    to = last.date() if last else clock.now().date()
    since = first.date() if first else to - DEFAULT_STATS_PERIOD
    if since > to:
        _fail("--from must not come after --to")

    async def work(session: AsyncSession) -> dict[str, Any]:
        merchant = await merchants.get_merchant_by_slug(session, merchant_slug)
        numbers = await offers.stats(session, merchant, since, to)
        return numbers.model_dump(mode="json", by_alias=True)

    _print(_in_transaction(settings, work))
