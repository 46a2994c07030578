"""The push service: delivers card changes to devices through APNs."""

from __future__ import annotations

from fastapi import FastAPI

from services.core.queue import Subscription
from services.core.queue.topics import CARD_UPDATED
from services.core.settings import Settings
from services.core.web import Component
from services.push.apns import AioApnsSender
from services.push.deliveries import DeliveryWorker, Wakeup
from services.push.handlers import card_updated


def component(settings: Settings) -> Component:
    wakeup = Wakeup()

    async def start(app: FastAPI) -> None:
        settings = app.state.settings
        app.state.apns_sender = AioApnsSender(
            settings.apns_url,
            ca_file=settings.apns_ca_file,
            timeout=settings.apns_timeout,
            max_connections=settings.apns_max_connections,
            recycle_after=settings.apns_connection_max_requests,
        )
        app.state.delivery_worker = DeliveryWorker(
            app.state.sessionmaker,
            app.state.apns_sender,
            wakeup,
            max_attempts=settings.push_max_attempts,
            poll_interval=settings.queue_poll_interval,
        )

    async def deliver(app: FastAPI) -> None:
        await app.state.delivery_worker.run()

    async def stop(app: FastAPI) -> None:
        await app.state.delivery_worker.stop(grace=app.state.settings.apns_timeout + 1)
        await app.state.apns_sender.close()

    return Component(
        name="push",
        subscriptions=[Subscription("push", CARD_UPDATED, card_updated(wakeup))],
        on_startup=[start],
        on_shutdown=[stop],
        tasks=[deliver],
    )
