"""Webhooks as each platform sends them: bodies shaped as its documentation shows, its
headers, and its signature.

Shopify: the REST Admin API resources its webhooks carry, and the headers of
https://shopify.dev/docs/apps/build/webhooks (``X-Shopify-Hmac-Sha256``, ``X-Shopify-Topic``,
``X-Shopify-Webhook-Id``, ``X-Shopify-Event-Id``, ``X-Shopify-Triggered-At``): the Order
(https://shopify.dev/docs/api/admin-rest/latest/resources/order), Fulfillment
(https://shopify.dev/docs/api/admin-rest/latest/resources/fulfillment), FulfillmentEvent
(https://shopify.dev/docs/api/admin-rest/latest/resources/fulfillmentevent) and Refund
(https://shopify.dev/docs/api/admin-rest/latest/resources/refund); duplicates
(https://shopify.dev/apps/build/webhooks/ignore-duplicates).

WooCommerce: the REST API's order (https://woocommerce.github.io/woocommerce-rest-api-docs/
#order-properties) and the webhook delivery headers and ping of its "Webhooks" section
(``X-WC-Webhook-Topic``, ``-Resource``, ``-Event``, ``-Signature``, ``-ID``, ``-Delivery-ID``;
the ping body ``webhook_id=N``).

Shoptet: the webhook body of https://developers.shoptet.com/api/documentation/webhooks/ and
https://api.docs.shoptet.com/shoptet-api/openapi/webhooks.md, signed as the implementations in
the wild verify it (hex HMAC-SHA1 of the body, ``Shoptet-Webhook-Signature``), and the API's
order detail (https://api.docs.shoptet.com/shoptet-api/openapi/orders/getorderdetail.md) and
statuses (https://api.docs.shoptet.com/shoptet-api/openapi/orders/getlistoforderstatuses).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx

SHOPIFY_SECRET = "shpss_0123456789abcdef0123456789abcdef"
WOO_SECRET = "wc-webhook-secret-0123456789"
SHOPTET_KEY = "shoptet-signature-key-0123456789"
SHOPTET_TOKEN = "123456-a-0123456789abcdef0123456789abcdef"
SHOPTET_API = "https://api.myshoptet.com"


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def base64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()


# Shopify


def shopify_order(
    status: str = "pending",
    *,
    updated_at: str = "2026-11-23T10:15:00+01:00",
    fulfillments: list[dict[str, Any]] | None = None,
    cancelled_at: str | None = None,
    customer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An Order as orders/create, orders/updated, orders/paid... carry it (abridged)."""
    return {
        "id": 450789469,
        "admin_graphql_api_id": "gid://shopify/Order/450789469",
        "email": "bob.norman@mail.example.com",
        "created_at": "2026-11-23T10:15:00+01:00",
        "updated_at": updated_at,
        "cancelled_at": cancelled_at,
        "cancel_reason": None,
        "closed_at": None,
        "currency": "EUR",
        "current_total_price": "49.90",
        "customer_locale": "sk-SK",
        "financial_status": status,
        "fulfillment_status": "fulfilled" if fulfillments else None,
        "name": "#1001",
        "number": 1,
        "order_number": 1001,
        "order_status_url": "https://checkout.shopify.com/112233/orders/b1946ac92492d2347c6235b4d2611184/authenticate?key=imasecretipod",
        "processed_at": "2026-11-23T10:15:00+01:00",
        "subtotal_price": "44.90",
        "total_price": "49.90",
        "customer": {
            "id": 207119551,
            "email": "bob.norman@mail.example.com",
            "first_name": "Bob",
            "last_name": "Norman",
            "state": "disabled",
            "currency": "EUR",
        }
        if customer is None
        else customer,
        "line_items": [
            {
                "id": 466157049,
                "name": "IPod Nano - 8gb - green",
                "price": "44.90",
                "quantity": 1,
                "sku": "IPOD2008GREEN",
                "title": "IPod Nano - 8gb",
                "variant_title": "green",
            }
        ],
        "shipping_lines": [{"id": 369256396, "title": "Free Shipping", "price": "5.00"}],
        "fulfillments": fulfillments or [],
    }


def shopify_fulfillment(
    shipment_status: str | None = None, *, updated_at: str = "2026-11-24T09:00:00+01:00"
) -> dict[str, Any]:
    """A Fulfillment as fulfillments/create and fulfillments/update carry it."""
    return {
        "id": 255858046,
        "order_id": 450789469,
        "status": "success",
        "created_at": "2026-11-24T09:00:00+01:00",
        "updated_at": updated_at,
        "service": "manual",
        "shipment_status": shipment_status,
        "location_id": 487838322,
        "tracking_company": "DPD",
        "tracking_number": "0123456789",
        "tracking_numbers": ["0123456789"],
        "tracking_url": "https://tracking.dpd.de/parcelstatus?query=0123456789",
        "tracking_urls": ["https://tracking.dpd.de/parcelstatus?query=0123456789"],
        "name": "#1001.1",
        "line_items": [{"id": 466157049, "name": "IPod Nano - 8gb - green", "quantity": 1}],
    }


def shopify_fulfillment_event(status: str, *, happened_at: str) -> dict[str, Any]:
    """A FulfillmentEvent as fulfillment_events/create carries it."""
    return {
        "id": 944956395,
        "fulfillment_id": 255858046,
        "status": status,
        "message": None,
        "happened_at": happened_at,
        "city": None,
        "province": None,
        "country": None,
        "zip": None,
        "address1": None,
        "latitude": None,
        "longitude": None,
        "shop_id": 548380009,
        "created_at": happened_at,
        "updated_at": happened_at,
        "estimated_delivery_at": "2026-11-26T12:00:00+01:00",
        "order_id": 450789469,
        "admin_graphql_api_id": "gid://shopify/FulfillmentEvent/944956395",
    }


def shopify_refund(amount: str, *, created_at: str = "2026-11-30T10:00:00+01:00") -> dict[str, Any]:
    """A Refund as refunds/create carries it."""
    return {
        "id": 509562969,
        "order_id": 450789469,
        "created_at": created_at,
        "note": "it broke during shipping",
        "user_id": 548380009,
        "processed_at": created_at,
        "restock": True,
        "refund_line_items": [],
        "transactions": [
            {
                "id": 179259969,
                "order_id": 450789469,
                "kind": "refund",
                "gateway": "bogus",
                "status": "success",
                "amount": amount,
                "currency": "EUR",
            }
        ],
    }


def shopify_headers(
    topic: str, body: bytes, *, secret: str = SHOPIFY_SECRET, webhook_id: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64_hmac(secret, body),
        "X-Shopify-Shop-Domain": "shop.myshopify.com",
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-11-23T09:15:00.000000000Z",
    }


async def post_shopify(
    client: httpx.AsyncClient,
    topic: str,
    payload: dict[str, Any],
    *,
    slug: str = "shop",
    secret: str = SHOPIFY_SECRET,
    webhook_id: str | None = None,
) -> httpx.Response:
    body = body_of(payload)
    headers = shopify_headers(topic, body, secret=secret, webhook_id=webhook_id)
    return await client.post(f"/v1/connectors/shopify/{slug}", content=body, headers=headers)


# WooCommerce


def woo_order(
    status: str = "pending",
    *,
    modified: str = "2026-11-23T09:15:00",
    customer_id: int = 26,
    tracking: bool = False,
) -> dict[str, Any]:
    """An order as the REST API (v3) gives it, which is what order webhooks deliver."""
    meta: list[dict[str, Any]] = []
    if tracking:
        meta.append(
            {
                "id": 2287,
                "key": "_wc_shipment_tracking_items",
                "value": [
                    {
                        "tracking_provider": "DPD",
                        "custom_tracking_provider": "",
                        "custom_tracking_link": "https://tracking.dpd.de/parcelstatus?query=0123456789",
                        "tracking_number": "0123456789",
                        "date_shipped": "1764000000",
                        "tracking_id": "4f3a2b1c",
                    }
                ],
            }
        )
    return {
        "id": 727,
        "parent_id": 0,
        "number": "727",
        "order_key": "wc_order_58d2d042d1d",
        "created_via": "checkout",
        "version": "9.4.0",
        "status": status,
        "currency": "EUR",
        "date_created": "2026-11-23T10:15:00",
        "date_created_gmt": "2026-11-23T09:15:00",
        "date_modified": modified,
        "date_modified_gmt": modified,
        "discount_total": "0.00",
        "shipping_total": "5.00",
        "total": "49.90",
        "total_tax": "0.00",
        "prices_include_tax": False,
        "customer_id": customer_id,
        "customer_note": "",
        "billing": {
            "first_name": "John",
            "last_name": "Doe",
            "company": "",
            "address_1": "969 Market",
            "city": "San Francisco",
            "postcode": "94103",
            "country": "US",
            "email": "john.doe@example.com",
            "phone": "(555) 555-5555",
        },
        "shipping": {
            "first_name": "John",
            "last_name": "Doe",
            "address_1": "969 Market",
            "city": "San Francisco",
            "postcode": "94103",
            "country": "US",
        },
        "payment_method": "bacs",
        "payment_method_title": "Direct Bank Transfer",
        "meta_data": meta,
        "line_items": [
            {
                "id": 315,
                "name": "Woo Single #1",
                "product_id": 93,
                "quantity": 2,
                "subtotal": "6.00",
                "total": "6.00",
            }
        ],
        "shipping_lines": [
            {"id": 317, "method_title": "Flat Rate", "method_id": "flat_rate", "total": "5.00"}
        ],
    }


def woo_headers(topic: str, body: bytes, *, secret: str = WOO_SECRET) -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.4.0 Hookshot (WordPress/6.7)",
        "X-WC-Webhook-Source": "https://shop.example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": base64_hmac(secret, body),
        "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
    }


async def post_woo(
    client: httpx.AsyncClient,
    topic: str,
    payload: dict[str, Any],
    *,
    slug: str = "shop",
    secret: str = WOO_SECRET,
) -> httpx.Response:
    body = body_of(payload)
    headers = woo_headers(topic, body, secret=secret)
    return await client.post(f"/v1/connectors/woocommerce/{slug}", content=body, headers=headers)


# Shoptet


def shoptet_webhook(
    code: str = "2026000057",
    *,
    event: str = "order:update",
    created: str = "2026-11-23T10:15:00+0100",
) -> dict[str, Any]:
    return {"eshopId": 222651, "event": event, "eventCreated": created, "eventInstance": code}


def shoptet_signature(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha1).hexdigest()


async def post_shoptet(
    client: httpx.AsyncClient,
    payload: dict[str, Any],
    *,
    slug: str = "shop",
    key: str = SHOPTET_KEY,
) -> httpx.Response:
    body = body_of(payload)
    headers = {
        "Content-Type": "application/json",
        "Shoptet-Webhook-Signature": shoptet_signature(key, body),
    }
    return await client.post(f"/v1/connectors/shoptet/{slug}", content=body, headers=headers)


SHOPTET_STATUSES = {
    "data": {
        "defaultStatus": -1,
        "statuses": [
            {
                "id": status_id,
                "name": name,
                "system": status_id < 0,
                "order": order,
                "markAsPaid": paid,
                "color": "#000000",
                "backgroundColor": None,
                "changeOrderItems": True,
                "stockClaimResolved": status_id == -3,
                "documents": {
                    "generateProformaInvoice": False,
                    "generateInvoice": status_id == -3,
                    "generateDeliveryNote": False,
                    "generateProofPayment": None,
                },
            }
            for order, (status_id, name, paid) in enumerate(
                [
                    (-1, "Nevyřízená", False),
                    (-2, "Vyřizuje se", False),
                    (-3, "Vyřízena", True),
                    (-4, "Stornována", False),
                    (12, "Zaplaceno", True),
                    (13, "Doručeno", False),
                ],
                start=1,
            )
        ],
    },
    "errors": None,
}
"""``GET /api/orders/statuses``: the system statuses and two of the shop's own."""


def shoptet_order(
    status_id: int, name: str, *, changed: str, code: str = "2026000057"
) -> dict[str, Any]:
    """``GET /api/orders/{code}``: the order's detail (abridged)."""
    return {
        "data": {
            "order": {
                "code": code,
                "guid": "5b2c7f1e-0c8d-11e9-a28d-0800273de8b5",
                "externalCode": None,
                "creationTime": "2026-11-23T10:15:00+0100",
                "changeTime": changed,
                "email": "jana.novakova@example.cz",
                "phone": "+420777123456",
                "birthDate": None,
                "clientCode": None,
                "companyId": None,
                "vatId": None,
                "taxId": None,
                "vatPayer": False,
                "customerGuid": "e2c0a2c6-0c8d-11e9-a28d-0800273de8b5",
                "addressesEqual": True,
                "cashDeskOrder": False,
                "stockId": 1,
                "billingAddress": {
                    "company": None,
                    "fullName": "Jana Nováková",
                    "street": "Dlouhá 12",
                    "houseNumber": None,
                    "city": "Praha",
                    "district": None,
                    "additional": None,
                    "zip": "110 00",
                    "countryCode": "CZ",
                    "regionName": None,
                    "regionShortcut": None,
                },
                "deliveryAddress": None,
                "ipAddress": "192.0.2.10",
                "referer": None,
                "language": "cs",
                "status": {"id": status_id, "name": name},
                "paid": status_id in (-3, 12),
                "price": {
                    "vat": "8.66",
                    "toPay": "1290.00",
                    "currencyCode": "CZK",
                    "withoutVat": "1066.12",
                    "withVat": "1290.00",
                    "exchangeRate": "1.00000000",
                },
                "adminUrl": f"https://shop.myshoptet.com/admin/objednavky-detail/?id={code}",
                "items": [
                    {
                        "itemType": "product",
                        "code": "0001",
                        "name": "Čajová konvice",
                        "amount": "1.000",
                        "amountUnit": "ks",
                        "itemPrice": {"withVat": "1190.00", "withoutVat": "983.47"},
                    },
                    {
                        "itemType": "shipping",
                        "code": None,
                        "name": "PPL",
                        "amount": "1.000",
                        "itemPrice": {"withVat": "100.00", "withoutVat": "82.65"},
                    },
                    {
                        "itemType": "billing",
                        "code": None,
                        "name": "Převodem",
                        "amount": "1.000",
                        "itemPrice": {"withVat": "0.00", "withoutVat": "0.00"},
                    },
                ],
            }
        },
        "errors": None,
    }
