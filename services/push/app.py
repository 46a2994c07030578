"""The push service: delivers card changes to devices (APNs) and to Google Wallet."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.contracts.messages import CardUpdated, WalletOrderUpdated
from services.core.queue import Subscription
from services.core.settings import Settings
from services.core.web import Component
from services.push import callbacks
from services.push.apns import AioApnsSender
from services.push.deliveries import DeliveryWorker
from services.push.google import GoogleClients, GoogleWorker
from services.push.handlers import card_updated, wallet_order_updated
from services.push.retention import push_retention
from services.push.workers import Wakeup


def component(settings: Settings) -> Component:
    apns_wakeup, google_wakeup = Wakeup(), Wakeup()

    async def start(app: FastAPI) -> None:
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
            apns_wakeup,
            batch_size=settings.push_in_flight,
            max_attempts=settings.push_max_attempts,
            lease_seconds=settings.push_lease_seconds,
            poll_interval=settings.queue_poll_interval,
        )
        app.state.google_clients = GoogleClients(settings.google_api_url)
        app.state.google_worker = GoogleWorker(
            app.state.sessionmaker,
            app.state.google_clients,
            google_wakeup,
            max_attempts=settings.push_max_attempts,
            poll_interval=settings.queue_poll_interval,
        )

    async def deliver_apns(app: FastAPI) -> None:
        await app.state.delivery_worker.run()

    async def deliver_google(app: FastAPI) -> None:
        await app.state.google_worker.run()

    async def stop(app: FastAPI) -> None:
        grace = settings.shutdown_grace_seconds
        await asyncio.gather(
            app.state.delivery_worker.stop(grace=grace), app.state.google_worker.stop(grace=grace)
        )
        await app.state.apns_sender.close()
        await app.state.google_clients.aclose()

    return Component(
        name="push",
        routers=[callbacks.router],
        subscriptions=[
            Subscription("push", CardUpdated, card_updated(apns_wakeup, google_wakeup)),
            Subscription("push", WalletOrderUpdated, wallet_order_updated(apns_wakeup)),
        ],
        on_startup=[start],
        on_shutdown=[stop],
        tasks=[deliver_apns, deliver_google],
        jobs=[push_retention(settings)],
    )
