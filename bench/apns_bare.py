"""The reference for push fan-out: a bare aioapns loop, in a process of its own.

``python -m bench.apns_bare`` reads one JSON job on stdin (stand-in URL, CA, the merchant's
pass type certificate and key, topic, tokens, connections, window) and sends one ``{}`` push to
each token through aioapns's own connection pool, keeping ``window`` requests in flight, with
nothing else around it: no database, no bookkeeping. aioapns takes no host or port, so a
protocol subclass carries the stand-in's, as the FACTS note says.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest
from aioapns.connection import APNsProductionClientProtocol


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit(job["url"])
    protocol = type(
        "StandinProtocol",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": parts.hostname, "APNS_PORT": parts.port},
    )
    context = ssl.create_default_context(cafile=job["ca_file"])
    context.set_alpn_protocols(["h2"])
    client = APNs(
        client_cert=job["bundle_path"],
        topic=job["topic"],
        max_connections=job["connections"],
        max_connection_attempts=1,
        ssl_context=context,
    )
    client.pool.protocol_class = protocol  # type: ignore[assignment]
    tokens: list[str] = job["tokens"]
    slots = asyncio.Semaphore(job["window"])
    statuses: dict[str, int] = {}

    async def one(token: str) -> None:
        async with slots:
            result = await client.send_notification(
                NotificationRequest(
                    device_token=token,
                    message={},
                    notification_id=str(uuid.uuid4()),
                    apns_topic=job["topic"],
                )
            )
        statuses[str(result.status)] = statuses.get(str(result.status), 0) + 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(t) for t in tokens))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    client.pool.close()
    return {"count": len(tokens), "elapsed": elapsed, "cpu_seconds": cpu, "statuses": statuses}


def main() -> None:
    job = json.loads(sys.stdin.read())
    # aioapns loads the client certificate from one file: certificate and key together.
    Path(job["bundle_path"]).write_bytes(
        Path(job["certificate_path"]).read_bytes() + Path(job["key_path"]).read_bytes()
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it on Linux
        result = asyncio.run(run_job(job))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(run_job(job))
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
