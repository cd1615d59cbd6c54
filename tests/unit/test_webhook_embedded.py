"""`workers.webhook.serve` embedded in a host process (tests, a supervisor): given a `stop` event, it leaves
SIGINT/SIGTERM to the host instead of uvicorn taking them over while it serves."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any, cast

from temporalio.client import Client

from pitstop.config import Settings
from pitstop.workers.webhook import serve

SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def test_embedded_webhook_leaves_signal_handlers_to_its_host(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, webhook={"token": "unit-test-token", "listen": "127.0.0.1:0"})
    before: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    ready, stop = asyncio.Event(), asyncio.Event()
    # No request reaches the app, so no Temporal call is made: any object stands in for the client.
    server = asyncio.create_task(serve(settings, client=cast(Client, object()), ready=ready, stop=stop, port=0))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        during = {sig: signal.getsignal(sig) for sig in SIGNALS}
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
    assert during == before, "uvicorn installed its own SIGINT/SIGTERM handlers although the host owns them"
    assert {sig: signal.getsignal(sig) for sig in SIGNALS} == before
