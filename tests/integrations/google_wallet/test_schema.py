"""The schema checker itself: it must refuse what Google would not accept as we mean it."""

from __future__ import annotations

import jsonschema
import pytest

from tests.integrations.google_wallet.schema import request_schema, validate


def test_a_minimal_object_fits() -> None:
    validate("LoyaltyObject", {"id": "1.a", "classId": "1.c", "state": "ACTIVE"})


@pytest.mark.parametrize(
    "body",
    [
        {"id": "1.a", "clasId": "1.c"},  # typo at the top
        {"id": "1.a", "barcode": {"type": "QR_CODE", "valeu": "x"}},  # typo in a nested schema
        {"id": "1.a", "state": "LIVE"},  # not in the enum
        {"id": "1.a", "textModulesData": {"header": "h"}},  # an object where a list belongs
        {"id": "1.a", "kind": "walletobjects#loyaltyObject"},  # deprecated
        {"id": "1.a", "hexBackgroundColor": "#000000"},  # only classes have a colour
    ],
)
def test_what_google_would_not_take_fails(body: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate("LoyaltyObject", body)


@pytest.mark.parametrize(
    ("method", "path", "schema"),
    [
        ("POST", "loyaltyClass", "LoyaltyClass"),
        ("PATCH", "loyaltyClass/1.c", "LoyaltyClass"),
        ("POST", "loyaltyObject", "LoyaltyObject"),
        ("PATCH", "loyaltyObject/1.a", "LoyaltyObject"),
        ("POST", "loyaltyObject/1.a/addMessage", "AddMessageRequest"),
        ("GET", "loyaltyObject/1.a", None),
    ],
)
def test_each_request_gets_its_schema_from_the_discovery_document(
    method: str, path: str, schema: str | None
) -> None:
    assert request_schema(method, path) == schema
