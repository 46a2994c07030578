"""Apple's Wallet Orders web service under ``/wallet-orders/v1`` (the order's
``webServiceURL``), and the customer's download of the package.

The token a device sends (``Authorization: AppleOrder <token>``) is derived from the order
identifier (``contracts.wallet_orders``), so a wrong one is refused before anything is read.
An order whose token checks out but whose first version passes has not made yet (the shop's
event is still in the queue, or Apple Pay handed the order on at once) answers 503 with
Retry-After: Wallet asks again, and nothing is lost.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.contracts.wallet_orders import (
    LINK,
    MEDIA_TYPE,
    ORDER_IDENTIFIER,
    PACKAGE_PATH,
    WALLET_ORDERS_PATH,
    link_matches,
    token_matches,
)
from services.core.db import Session, read_connection
from services.core.errors import (
    BadRequest,
    NotConfigured,
    NotFound,
    RetryLater,
    TooManyRequests,
    Unauthorized,
)
from services.core.settings import Settings
from services.passes import registrations
from services.passes.apple import webservice as passkit
from services.passes.models import WalletOrder, WalletOrderRegistration
from services.passes.wallet_orders.package import OrderPackageBuilder, SignedOrder, cached_package
from services.passes.wallet_orders.settings import MAX_IDENTIFIER_LENGTH, ORDER_TYPE_ID

router = APIRouter(prefix=f"{WALLET_ORDERS_PATH}/v1", tags=["Wallet Orders web service"])
downloads = APIRouter(prefix=PACKAGE_PATH, tags=["customer links"])

AUTH_SCHEME = "AppleOrder "
APPLE_ORDER = APIKeyHeader(
    name="Authorization",
    scheme_name="AppleOrder",
    description="`Authorization: AppleOrder <authenticationToken>`: the token in the order",
    auto_error=False,
)
Authorization = Annotated[str | None, Security(APPLE_ORDER)]
NOT_YET_SECONDS = 5


class OrderOnItsWay(RetryLater):
    """The order's token is right, its first version is not made yet (``order.changed`` is
    on its way): ask again shortly."""

    status_code = 503
    code = "order_not_ready"


_ORDER_TYPE = {
    "type": "string",
    "pattern": f"^{ORDER_TYPE_ID.pattern}$",
    "maxLength": MAX_IDENTIFIER_LENGTH,
}
_IDENTIFIER = {"type": "string", "pattern": f"^{ORDER_IDENTIFIER.pattern}$"}
Device = Annotated[
    str, Path(description="deviceIdentifier", json_schema_extra=passkit.DEVICE_SCHEMA)
]
OrderType = Annotated[str, Path(description="orderTypeIdentifier", json_schema_extra=_ORDER_TYPE)]
OrderIdentifier = Annotated[str, Path(description="orderIdentifier", json_schema_extra=_IDENTIFIER)]
REGISTRATION_PATH = "/devices/{device}/registrations/{order_type}/{order_identifier}"


def _check_path(
    device: str | None = None, order_type: str | None = None, identifier: str | None = None
) -> None:
    if device is not None and not registrations.DEVICE_ID.fullmatch(device):
        raise BadRequest("malformed deviceIdentifier")
    if order_type is not None and (
        len(order_type) > MAX_IDENTIFIER_LENGTH or not ORDER_TYPE_ID.fullmatch(order_type)
    ):
        raise BadRequest("malformed orderTypeIdentifier")
    if identifier is not None and not ORDER_IDENTIFIER.fullmatch(identifier):
        raise BadRequest("malformed orderIdentifier")


def _authenticate(settings: Settings, identifier: str, authorization: str | None) -> None:
    scheme, _, given = (authorization or "").partition(" ")
    if f"{scheme} " != AUTH_SCHEME or not token_matches(
        settings.resolved_secret_key(), identifier, given
    ):
        raise Unauthorized("missing or wrong AppleOrder token")


_FIND = select(WalletOrder.id, WalletOrder.version, WalletOrder.changed_at).where(
    WalletOrder.order_type_identifier == bindparam("order_type"),
    WalletOrder.order_identifier == bindparam("identifier"),
)


async def _authorized_order(
    session: AsyncSession,
    request: Request,
    order_type: str,
    identifier: str,
    authorization: str | None,
) -> WalletOrder:
    _authenticate(request.app.state.settings, identifier, authorization)
    order = await session.scalar(
        select(WalletOrder).where(
            WalletOrder.order_type_identifier == order_type,
            WalletOrder.order_identifier == identifier,
        )
    )
    if order is None:
        raise OrderOnItsWay("this order is not in Wallet yet", retry_after=NOT_YET_SECONDS)
    return order


_errors: dict[int | str, dict[str, Any]] = {
    **BadRequest.openapi("Malformed path or body"),
    **Unauthorized.openapi("Missing or wrong AppleOrder token"),
    **OrderOnItsWay.openapi("The order's first version is not made yet; see Retry-After"),
}
_REGISTRATION_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"pushToken": {"type": "string", "pattern": "^[0-9A-Fa-f]{16,200}$"}},
                "required": ["pushToken"],
            }
        }
    },
}


@router.post(
    REGISTRATION_PATH,
    status_code=201,
    response_class=Response,
    responses={
        201: {"description": "Registered"},
        200: {"description": "Already registered"},
        **_errors,
    },
    openapi_extra={"requestBody": _REGISTRATION_BODY},
)
async def register_device(
    device: Device,
    order_type: OrderType,
    order_identifier: OrderIdentifier,
    request: Request,
    session: Session,
    authorization: Authorization = None,
) -> Response:
    """Register a device to receive update notifications for an order."""
    _check_path(device, order_type, order_identifier)
    order = await _authorized_order(session, request, order_type, order_identifier, authorization)
    push_token = (await passkit.json_object(request)).get("pushToken")
    if not isinstance(push_token, str) or not registrations.PUSH_TOKEN.fullmatch(push_token):
        raise BadRequest("pushToken must be a hexadecimal APNs device token")
    existing = await session.scalar(
        select(WalletOrderRegistration).where(
            WalletOrderRegistration.device_identifier == device,
            WalletOrderRegistration.wallet_order_id == order.id,
        )
    )
    if existing is not None:
        existing.push_token = push_token
        return Response(status_code=200)
    await _refuse_past_limits(session, request.app.state.settings, order, device)
    try:
        async with session.begin_nested():
            session.add(
                WalletOrderRegistration(
                    device_identifier=device, wallet_order_id=order.id, push_token=push_token
                )
            )
    except IntegrityError:  # the same device registering twice at once
        return Response(status_code=200)
    return Response(status_code=201)


async def _refuse_past_limits(
    session: AsyncSession, settings: Settings, order: WalletOrder, device: str
) -> None:
    """As many devices per order, and orders per device, as cards may have: each is a push
    per change. The order's row is locked first, so registrations counted at once cannot
    pass the limit together."""
    await session.execute(
        select(WalletOrder.id).where(WalletOrder.id == order.id).with_for_update()
    )
    counted = select(func.count()).select_from(WalletOrderRegistration)
    devices = await session.scalar(
        counted.where(WalletOrderRegistration.wallet_order_id == order.id)
    )
    if (devices or 0) >= settings.max_devices_per_card:
        raise TooManyRequests(
            f"this order is registered on {settings.max_devices_per_card} devices, as many as "
            "it may be",
            retry_after=registrations.FULL_RETRY_AFTER_SECONDS,
        )
    orders = await session.scalar(
        counted.where(WalletOrderRegistration.device_identifier == device)
    )
    if (orders or 0) >= settings.max_passes_per_device:
        raise TooManyRequests(
            f"this device is registered for {settings.max_passes_per_device} orders, as many "
            "as it may",
            retry_after=registrations.FULL_RETRY_AFTER_SECONDS,
        )


@router.delete(
    REGISTRATION_PATH,
    response_class=Response,
    responses={200: {"description": "Unregistered"}, **_errors},
)
async def unregister_device(
    device: Device,
    order_type: OrderType,
    order_identifier: OrderIdentifier,
    request: Request,
    session: Session,
    authorization: Authorization = None,
) -> Response:
    """Stop update notifications for an order on a device (200 whether or not it was)."""
    _check_path(device, order_type, order_identifier)
    order = await _authorized_order(session, request, order_type, order_identifier, authorization)
    await session.execute(
        delete(WalletOrderRegistration).where(
            WalletOrderRegistration.device_identifier == device,
            WalletOrderRegistration.wallet_order_id == order.id,
        )
    )
    return Response(status_code=200)


_MODIFIED = (
    select(WalletOrder.order_identifier, WalletOrder.update_tag)
    .join(WalletOrderRegistration, WalletOrderRegistration.wallet_order_id == WalletOrder.id)
    .where(
        WalletOrderRegistration.device_identifier == bindparam("device"),
        WalletOrder.order_type_identifier == bindparam("order_type"),
        WalletOrder.update_tag > bindparam("since"),
    )
    .order_by(WalletOrder.update_tag)
)
_IDENTIFIERS_SCHEMA = {
    "type": "object",
    "properties": {
        "orderIdentifiers": {"type": "array", "items": {"type": "string"}},
        "lastModified": {"type": "string"},
    },
    "required": ["orderIdentifiers", "lastModified"],
}


@router.get(
    "/devices/{device}/registrations/{order_type}",
    response_class=Response,
    responses={
        200: {
            "description": "Orders modified since the tag",
            "content": {"application/json": {"schema": _IDENTIFIERS_SCHEMA}},
        },
        204: {"description": "No matching orders"},
        **BadRequest.openapi("Malformed path"),
    },
    openapi_extra={
        "parameters": [
            passkit.parameter("path", "device", "deviceIdentifier", passkit.DEVICE_SCHEMA),
            passkit.parameter("path", "order_type", "orderTypeIdentifier", _ORDER_TYPE),
            passkit.parameter("query", "ordersModifiedSince", "lastModified of an earlier answer"),
        ]
    },
)
async def list_modified_orders(request: Request) -> Response:
    """The device's orders modified after ``ordersModifiedSince`` (a tag we handed out)."""
    device: str = request.path_params["device"]
    order_type: str = request.path_params["order_type"]
    _check_path(device, order_type)
    since = registrations.parse_tag(request.query_params.get("ordersModifiedSince"))
    parameters = {
        "device": device,
        "order_type": order_type,
        "since": -1 if since is None else since,
    }
    async with read_connection(request) as connection:
        rows = (await connection.execute(_MODIFIED, parameters)).all()
    if not rows:
        return Response(status_code=204)
    # lastModified is a string, as Apple's OrderIdentifiers says (and as passes learned).
    last = max(row.update_tag for row in rows)
    return JSONResponse(
        {"orderIdentifiers": [row.order_identifier for row in rows], "lastModified": str(last)}
    )


def order_response(signed: SignedOrder) -> Response:
    return Response(
        content=signed.content,
        media_type=MEDIA_TYPE,
        headers={
            "Last-Modified": format_datetime(signed.changed_at, usegmt=True),
            "Content-Disposition": 'attachment; filename="order.order"',
            "Cache-Control": "private, no-cache",
        },
    )


@router.get(
    "/orders/{order_type}/{order_identifier}",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The latest signed order"},
        304: {"description": "Not modified since If-Modified-Since"},
        **Unauthorized.openapi("Missing or wrong AppleOrder token"),
        **NotFound.openapi("Malformed order type or identifier"),
        **OrderOnItsWay.openapi("The order's first version is not made yet; see Retry-After"),
        **NotConfigured.openapi("The merchant's Order Type ID material is unusable"),
    },
    openapi_extra={
        "parameters": [
            passkit.parameter("path", "order_type", "orderTypeIdentifier", _ORDER_TYPE),
            passkit.parameter("path", "order_identifier", "orderIdentifier", _IDENTIFIER),
            passkit.parameter("header", "If-Modified-Since", "Last-Modified of the device's copy"),
        ],
        "security": [{APPLE_ORDER.scheme_name: []}],
    },
)
async def latest_order(request: Request) -> Response:
    """The latest version of an order, or 304 when the device has it already."""
    order_type: str = request.path_params["order_type"]
    identifier: str = request.path_params["order_identifier"]
    try:
        _check_path(order_type=order_type, identifier=identifier)
    except BadRequest:
        raise NotFound("no such order") from None
    _authenticate(request.app.state.settings, identifier, request.headers.get("authorization"))
    async with read_connection(request) as connection:
        row = (
            await connection.execute(_FIND, {"order_type": order_type, "identifier": identifier})
        ).first()
        if row is None:
            raise OrderOnItsWay("this order is not in Wallet yet", retry_after=NOT_YET_SECONDS)
        since = passkit.http_date(request.headers.get("if-modified-since"))
        if since is not None and row.changed_at <= since:
            return Response(status_code=304)
        content = await cached_package(connection, row.id, row.version)
    if content is not None:
        return order_response(SignedOrder(content, row.version, row.changed_at))
    return order_response(await _build_and_keep(request, order_type, identifier))


async def _build_and_keep(request: Request, order_type: str, identifier: str) -> SignedOrder:
    """A version nobody fetched yet: built once, kept in a write transaction of its own."""
    builder: OrderPackageBuilder = request.app.state.order_package_builder
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        order = await session.scalar(
            select(WalletOrder).where(
                WalletOrder.order_type_identifier == order_type,
                WalletOrder.order_identifier == identifier,
            )
        )
        if order is None:  # gone since the read: its merchant was removed
            raise NotFound("no such order")
        return await builder.signed_order(session, order)


@router.post(
    "/log",
    response_class=Response,
    responses={
        200: {"description": "Logged"},
        **BadRequest.openapi("Malformed body"),
        **TooManyRequests.openapi("This address logged too often; see Retry-After"),
    },
    openapi_extra={"requestBody": passkit.LOG_BODY},
)
async def device_log(request: Request) -> Response:
    """Devices report problems with our orders here, as with passes (the same limits)."""
    return await passkit.device_log(request)


_LINK = {"type": "string", "pattern": f"^{LINK.pattern}$"}


@downloads.get(
    "/{order_identifier}/{link}",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The order's signed package"},
        **NotFound.openapi("No order behind this link"),
        **OrderOnItsWay.openapi("The order's first version is not made yet; see Retry-After"),
        **NotConfigured.openapi("The merchant's Order Type ID material is unusable"),
    },
)
async def download_order(
    order_identifier: Annotated[str, Path(json_schema_extra=_IDENTIFIER)],
    link: Annotated[str, Path(json_schema_extra=_LINK)],
    request: Request,
    session: Session,
) -> Response:
    """The package behind a shop's ``wallet_order.url``: Safari on an iPhone offers to add it."""
    settings: Settings = request.app.state.settings
    if not (
        ORDER_IDENTIFIER.fullmatch(order_identifier)
        and LINK.fullmatch(link)
        and link_matches(settings.resolved_secret_key(), order_identifier, link)
    ):
        raise NotFound("no order behind this link")
    order = await session.scalar(
        select(WalletOrder).where(WalletOrder.order_identifier == order_identifier)
    )
    if order is None:
        raise OrderOnItsWay("this order is not in Wallet yet", retry_after=NOT_YET_SECONDS)
    builder: OrderPackageBuilder = request.app.state.order_package_builder
    return order_response(await builder.signed_order(session, order))
