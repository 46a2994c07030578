"""The REST client against the mocked Wallet API: upserts, retries, Google's errors, messages."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

from services.integrations.google_wallet.client import (
    GoogleWalletClient,
    GoogleWalletError,
    RetryPolicy,
)
from services.integrations.google_wallet.objects import WalletMessage, loyalty_class, loyalty_object
from tests.integrations.google_wallet.conftest import ISSUER_ID, Sleeps, WalletApi, google_error
from tests.integrations.google_wallet.test_objects import CLASS_ID, card_view, class_view

OBJECT_ID = f"{ISSUER_ID}.0f3c9a7e5b1d4c2a8e6f"
OBJECT_PATH = f"loyaltyObject/{OBJECT_ID}"
CLASS_PATH = f"loyaltyClass/{CLASS_ID}"


def ok(body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body or {"id": OBJECT_ID})


async def test_an_existing_object_is_patched(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("PATCH", OBJECT_PATH, ok({"id": OBJECT_ID, "state": "ACTIVE"}))

    result = await wallet_client.upsert_object(loyalty_object(card_view()))

    assert result == {"id": OBJECT_ID, "state": "ACTIVE"}
    assert [(m, p) for m, p, _ in wallet_api.bodies()] == [("PATCH", OBJECT_PATH)]


async def test_a_missing_object_is_inserted(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("PATCH", OBJECT_PATH, google_error(404, "not found", "resourceNotFound"))
    wallet_api.answer("POST", "loyaltyObject", ok())

    await wallet_client.upsert_object(loyalty_object(card_view()))

    calls = wallet_api.bodies()
    assert [(m, p) for m, p, _ in calls] == [("PATCH", OBJECT_PATH), ("POST", "loyaltyObject")]
    assert calls[1][2] == loyalty_object(card_view())


async def test_an_object_inserted_meanwhile_is_patched(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer(
        "PATCH", OBJECT_PATH, google_error(404, "not found", "resourceNotFound"), ok()
    )
    wallet_api.answer("POST", "loyaltyObject", google_error(409, "exists", "duplicate"))

    await wallet_client.upsert_object(loyalty_object(card_view()))

    assert [(m, p) for m, p, _ in wallet_api.bodies()] == [
        ("PATCH", OBJECT_PATH),
        ("POST", "loyaltyObject"),
        ("PATCH", OBJECT_PATH),
    ]
    assert wallet_api.token_route.call_count == 1


async def test_a_body_google_would_refuse_fails_the_mock(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("PATCH", OBJECT_PATH, ok())

    with pytest.raises(jsonschema.ValidationError, match="clasId"):
        await wallet_client.patch_object(OBJECT_ID, {"id": OBJECT_ID, "clasId": CLASS_ID})


async def test_the_class_is_created_or_updated_the_same_way(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("PATCH", CLASS_PATH, google_error(404, "not found", "resourceNotFound"))
    wallet_api.answer("POST", "loyaltyClass", ok({"id": CLASS_ID}))

    assert await wallet_client.upsert_class(loyalty_class(class_view())) == {"id": CLASS_ID}


async def test_get_insert_and_patch_one_by_one(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("GET", CLASS_PATH, ok({"id": CLASS_ID}))
    wallet_api.answer("GET", OBJECT_PATH, ok())
    wallet_api.answer("POST", "loyaltyClass", ok({"id": CLASS_ID}))
    wallet_api.answer("PATCH", CLASS_PATH, ok({"id": CLASS_ID}))
    wallet_api.answer("POST", "loyaltyObject", ok())
    wallet_api.answer("PATCH", OBJECT_PATH, ok())

    assert await wallet_client.get_class(CLASS_ID) == {"id": CLASS_ID}
    assert await wallet_client.get_object(OBJECT_ID) == {"id": OBJECT_ID}
    await wallet_client.insert_class(loyalty_class(class_view()))
    await wallet_client.patch_class(CLASS_ID, {"programName": "Orders"})
    await wallet_client.insert_object(loyalty_object(card_view()))
    await wallet_client.patch_object(OBJECT_ID, {"state": "INACTIVE"})

    assert len(wallet_api.requests) == 6


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_server_errors_are_retried_with_backoff(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient, sleeps: Sleeps, status: int
) -> None:
    wallet_api.answer(
        "PATCH",
        OBJECT_PATH,
        google_error(status, "try later", "backendError"),
        google_error(status, "try later", "backendError"),
        ok(),
    )

    await wallet_client.patch_object(OBJECT_ID, loyalty_object(card_view()))

    assert len(wallet_api.requests) == 3
    assert len(sleeps.delays) == 2
    # Full jitter under a doubling ceiling (base 1 s).
    assert 0 <= sleeps.delays[0] <= 1.0
    assert 0 <= sleeps.delays[1] <= 2.0


async def test_retries_stop_after_the_last_attempt(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient, sleeps: Sleeps
) -> None:
    wallet_api.answer("GET", OBJECT_PATH, google_error(503, "unavailable", "backendError"))

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.get_object(OBJECT_ID)

    assert raised.value.status == 503
    assert raised.value.retryable
    assert len(wallet_api.requests) == 4
    assert len(sleeps.delays) == 3


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        assert all(0 <= policy.delay(retry) <= ceiling for _ in range(50))


@pytest.mark.parametrize(
    ("status", "reason", "google_status"),
    [
        (400, "invalidArgument", "INVALID_ARGUMENT"),
        (403, "permissionDenied", "PERMISSION_DENIED"),
        (404, "resourceNotFound", None),
        (409, "duplicate", None),
    ],
)
async def test_answers_are_not_retried_and_keep_googles_message(
    wallet_api: WalletApi,
    wallet_client: GoogleWalletClient,
    sleeps: Sleeps,
    status: int,
    reason: str,
    google_status: str | None,
) -> None:
    message = f"Google says {status}: the issuer has no access to the class."
    wallet_api.answer("PATCH", OBJECT_PATH, google_error(status, message, reason, google_status))

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.patch_object(OBJECT_ID, loyalty_object(card_view()))

    error = raised.value
    assert (error.status, error.message, error.reason) == (status, message, reason)
    assert error.google_status == google_status
    assert not error.retryable
    assert not error.quota_exceeded
    assert str(error) == f"Google Wallet API {status} {reason}: {message}"
    assert len(wallet_api.requests) == 1
    assert sleeps.delays == []


async def test_a_notification_over_the_budget_is_quota_exceeded(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    # The shape Google answers with (no "status" member), as reported by other issuers.
    message = (
        f"Quota exceeded for issuer {ISSUER_ID} when adding TEXT_AND_NOTIFY message to class "
        f"{CLASS_ID}."
    )
    wallet_api.answer(
        "POST", f"{OBJECT_PATH}/addMessage", google_error(403, message, "quotaExceeded")
    )

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.add_message(
            OBJECT_ID, WalletMessage("v8", "Delivered", "Enjoy"), notify=True
        )

    assert raised.value.quota_exceeded
    assert raised.value.message == message
    assert len(wallet_api.requests) == 1


@pytest.mark.parametrize(("notify", "message_type"), [(True, "TEXT_AND_NOTIFY"), (False, "TEXT")])
async def test_messages_notify_only_when_asked(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient, notify: bool, message_type: str
) -> None:
    wallet_api.answer("POST", f"{OBJECT_PATH}/addMessage", ok({"resource": {"id": OBJECT_ID}}))

    await wallet_client.add_message(
        OBJECT_ID, WalletMessage("v8", "Shipped", "On its way"), notify=notify
    )

    [(_, _, body)] = wallet_api.bodies()
    assert body == {
        "message": {
            "id": "v8",
            "header": "Shipped",
            "body": "On its way",
            "messageType": message_type,
        }
    }


async def test_a_rejected_token_is_renewed_once(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient, sleeps: Sleeps
) -> None:
    wallet_api.answer(
        "GET", OBJECT_PATH, google_error(401, "Invalid Credentials", "authError"), ok()
    )

    assert await wallet_client.get_object(OBJECT_ID) == {"id": OBJECT_ID}
    assert wallet_api.token_route.call_count == 2
    assert sleeps.delays == []


async def test_a_token_rejected_twice_is_an_error(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("GET", OBJECT_PATH, google_error(401, "Invalid Credentials", "authError"))

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.get_object(OBJECT_ID)

    assert raised.value.status == 401
    assert wallet_api.token_route.call_count == 2


async def test_a_refused_service_account_is_a_wallet_error(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient, sleeps: Sleeps
) -> None:
    wallet_api.token_route.mock(
        return_value=httpx.Response(400, json={"error": "invalid_grant", "error_description": "x"})
    )

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.get_object(OBJECT_ID)

    assert (raised.value.status, raised.value.reason) == (400, "invalid_grant")
    assert sleeps.delays == []


async def test_unanswered_requests_are_retried(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    route = wallet_api.answer("PATCH", OBJECT_PATH, ok())
    route.side_effect = [httpx.ReadTimeout("slow"), ok()]

    await wallet_client.patch_object(OBJECT_ID, loyalty_object(card_view()))

    assert route.call_count == 2


async def test_a_message_that_may_have_arrived_is_not_sent_twice(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    route = wallet_api.answer("POST", f"{OBJECT_PATH}/addMessage", ok())
    route.side_effect = [httpx.ReadTimeout("slow"), ok()]

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.add_message(OBJECT_ID, WalletMessage("v8", "h", "b"), notify=True)

    assert raised.value.status == 0
    assert route.call_count == 1


async def test_a_message_that_never_left_is_retried(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    route = wallet_api.answer("POST", f"{OBJECT_PATH}/addMessage", ok())
    route.side_effect = [httpx.ConnectError("refused"), ok()]

    await wallet_client.add_message(OBJECT_ID, WalletMessage("v8", "h", "b"), notify=True)

    assert route.call_count == 2


async def test_an_error_without_googles_json_keeps_the_http_reason(
    wallet_api: WalletApi, wallet_client: GoogleWalletClient
) -> None:
    wallet_api.answer("GET", OBJECT_PATH, httpx.Response(400, text="<html>Bad Request</html>"))

    with pytest.raises(GoogleWalletError) as raised:
        await wallet_client.get_object(OBJECT_ID)

    assert (raised.value.status, raised.value.message, raised.value.reason) == (
        400,
        "Bad Request",
        None,
    )


def test_the_newer_error_shape_gives_its_reason_too() -> None:
    response = httpx.Response(
        429,
        json={
            "error": {
                "code": 429,
                "message": "Too many requests",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com",
                    }
                ],
            }
        },
    )
    error = GoogleWalletError.from_response(response)
    assert (error.reason, error.google_status, error.retryable) == (
        "RATE_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        True,
    )


async def test_ids_outside_googles_characters_never_reach_a_url(
    wallet_client: GoogleWalletClient,
) -> None:
    with pytest.raises(ValueError, match="Google Wallet id"):
        await wallet_client.get_object(f"{ISSUER_ID}.../../issuers")
    with pytest.raises(ValueError, match="Google Wallet id"):
        await wallet_client.upsert_object({"classId": CLASS_ID})


async def test_a_custom_base_url_is_used(wallet_api: WalletApi) -> None:
    class StaticToken:
        async def token(self) -> str:
            return "ya29.test-access-token"

        def invalidate(self) -> None:
            raise AssertionError("not expected")

    route = wallet_api.router.get(f"https://wallet.test/v1/{OBJECT_PATH}").mock(return_value=ok())
    async with GoogleWalletClient(StaticToken(), base_url="https://wallet.test/v1/") as client:
        assert await client.get_object(OBJECT_ID) == {"id": OBJECT_ID}
    assert route.called
