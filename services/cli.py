"""``passpost``: set up, run and administer the services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession

from services.apns_standin import main as run_apns_standin
from services.core.db import create_engine, create_sessionmaker
from services.core.errors import PasspostError
from services.core.logging import configure_logging
from services.core.migrations import upgrade_to_head
from services.core.settings import Environment, Settings, get_settings
from services.core.web import Component
from services.core.workers import WorkerPool
from services.integrations.google_wallet.auth import AccessTokens, ServiceAccount
from services.integrations.google_wallet.client import GoogleWalletClient, GoogleWalletError
from services.merchants import google_wallet
from services.merchants import service as merchants
from services.merchants.schemas import MerchantCreate, MerchantRead
from services.onboarding import onboard_merchant
from services.passes import changes, designs, issuing
from services.passes import google_wallet as card_google_wallet
from services.passes.apple.devchain import ensure_dev_chain
from services.passes.schemas import AppleSettings, Branding, CardIssue

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
merchants_app = typer.Typer(help="Merchants and their API keys.", no_args_is_help=True)
designs_app = typer.Typer(
    help="A merchant's pass design: Apple settings, branding, images.", no_args_is_help=True
)
cards_app = typer.Typer(help="Customer cards.", no_args_is_help=True)
google_app = typer.Typer(help="Google Wallet for a merchant.", no_args_is_help=True)
app.add_typer(merchants_app, name="merchants")
app.add_typer(designs_app, name="designs")
app.add_typer(cards_app, name="cards")
app.add_typer(google_app, name="google")

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
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except PasspostError as exc:
        _fail(exc.message)
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (OperationalError, ProgrammingError) as exc:
        _fail(f"the database is not ready ({type(exc.orig).__name__}); run `passpost migrate`")
    except DBAPIError as exc:
        _fail(f"database error: {type(exc.orig).__name__}")


def _merchant_json(merchant: Any) -> dict[str, Any]:
    return MerchantRead.model_validate(merchant).model_dump(mode="json")


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest version (the prestart step)."""
    settings = _settings()
    try:
        upgrade_to_head(settings)
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(f"cannot migrate {settings.resolved_database_url.split('@')[-1]}: {exc}")
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
            "from doing work twice). /metrics then shows the process that answered.",
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
    problems = _in_transaction(settings, designs.check_designs)
    if problems:
        _fail("\n  ".join(["the configuration has problems:", *problems]))
    host, port = host or settings.host, port or settings.port
    typer.echo(
        f"passpost {service.value} on http://{host}:{port}  (API docs: /docs, health: /healthz, "
        f"metrics: /metrics; links start with {settings.base_url()})",
        err=True,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "proxy_headers": True,
        "server_header": False,
        # SIGTERM: requests in flight get this long; then the lifespan's shutdown as long.
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
    if workers > 1:
        # Each worker is a fresh process that imports the app factory by name.
        os.environ[SERVED_SERVICE_ENV] = service.value
        try:
            WorkerPool(f"{__name__}:{web_app.__name__}", workers, options).run()
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    else:
        uvicorn.run(_build_app(settings, service, extra), **options)


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
    split deployment has always found it, and alone with ``serve admin``."""
    from services.admin.app import component as admin_component
    from services.orders.app import component as orders_component
    from services.passes.app import component as passes_component
    from services.push.app import component as push_component

    chosen = {
        ServiceName.orders: [orders_component(settings)],
        ServiceName.passes: [passes_component(settings), admin_component(settings)],
        ServiceName.push: [push_component(settings)],
        ServiceName.admin: [admin_component(settings)],
    }.get(service) or [
        orders_component(settings),
        passes_component(settings),
        push_component(settings),
        admin_component(settings),
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
    problems = _in_transaction(settings, designs.check_designs)
    if problems:
        _fail("\n  ".join(["the configuration has problems:", *problems]))
    typer.echo("configuration ok", err=True)


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
