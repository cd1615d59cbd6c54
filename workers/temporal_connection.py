"""Connecting to Temporal: the one place a `temporalio.client.Client` is built from Settings.

Every client uses the pydantic data converter, so workflow inputs and outputs are typed models, with the
payload encryption codec when `security.payload_keys_file` is set (workers/payload_codec.py; a worker built on the
client encrypts too).
"""

from __future__ import annotations

import asyncio
import dataclasses

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from pitstop.config import Settings

from .errors import EXIT_UNAVAILABLE, EXIT_USAGE, CliError
from .payload_codec import KeyRingError, codec_from_file
from .tracing import client_interceptors


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter, encrypting payloads when a key ring is configured."""
    try:
        codec = codec_from_file(settings.security.payload_keys_file)
    except KeyRingError as exc:
        raise CliError(f"security.payload_keys_file: {exc}", exit_code=EXIT_USAGE) from None
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec) if codec else pydantic_data_converter


async def connect(settings: Settings, *, timeout_seconds: float = 5.0, runtime: Runtime | None = None,
                  lazy: bool = False) -> Client:
    """Connect or raise CliError naming the address (never hangs longer than `timeout_seconds`).

    `lazy=True` returns at once and connects on the first call (the webhook: it must accept and journal alerts
    even while Temporal is still down).
    """
    temporal = settings.temporal
    tls: TLSConfig | bool = False
    if temporal.tls or temporal.tls_cert:
        tls = TLSConfig(
            client_cert=temporal.tls_cert.read_bytes() if temporal.tls_cert else None,
            client_private_key=temporal.tls_key.read_bytes() if temporal.tls_key else None,
        )
    api_key = temporal.api_key.get_secret_value() if temporal.api_key else None
    try:
        return await asyncio.wait_for(
            Client.connect(
                temporal.address,
                namespace=temporal.namespace,
                data_converter=data_converter(settings),
                tls=tls,
                api_key=api_key,
                runtime=runtime,
                lazy=lazy,
                interceptors=client_interceptors(settings),  # OpenTelemetry traces when configured (workers/tracing.py)
            ),
            timeout=timeout_seconds,
        )
    except (asyncio.TimeoutError, RuntimeError, OSError) as exc:
        text = str(exc)
        detail = "connection refused" if "refused" in text.lower() else (text.splitlines()[0][:160] if text else "timed out")
        raise CliError(
            f"cannot reach Temporal at {temporal.address} (namespace {temporal.namespace}): {detail}. "
            "Is `pitstop up` running, or PITSTOP_TEMPORAL__ADDRESS set?",
            exit_code=EXIT_UNAVAILABLE,
        ) from exc
