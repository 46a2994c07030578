"""A whole installation in the test process: all three services and the local APNs stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.apns_standin import ApnsStandin
from services.core.settings import Settings
from services.core.web import create_app
from services.offers.app import component as offers_component
from services.orders.app import component as orders_component
from services.passes.app import component as passes_component
from services.passes.apple.devchain import ensure_dev_chain
from services.push.app import component as push_component
from tests.conftest import BASE_URL, QUEUE_BACKENDS, on_queue_backend
from tests.e2e import offers_standin


@pytest.fixture(params=QUEUE_BACKENDS)
async def settings(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Settings]:
    """Every end-to-end flow runs on each queue backend."""
    async with on_queue_backend(settings, request.param) as on_backend:
        yield on_backend


@pytest.fixture
async def standin(settings: Settings) -> AsyncIterator[ApnsStandin]:
    chain = ensure_dev_chain(settings.keys_dir)
    async with ApnsStandin(
        certfile=chain.apns_standin_certificate,
        keyfile=chain.apns_standin_key,
        client_ca_file=chain.client_ca_bundle,
    ) as running:
        yield running


@pytest.fixture
def push_settings(settings: Settings, standin: ApnsStandin) -> Settings:
    return settings.model_copy(
        update={
            "apns_url": standin.url,
            "apns_ca_file": settings.keys_dir / "dev-root.pem",
            "apns_timeout": 1.0,
        }
    )


def installation(settings: Settings, *, push: bool = True) -> FastAPI:
    components = [
        orders_component(settings),
        passes_component(settings),
        offers_standin.recording(offers_component(settings)),  # notes what passes tells it
    ]
    return create_app(settings, [*components, push_component(settings)] if push else components)


@pytest.fixture
async def device_client(push_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = installation(push_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
