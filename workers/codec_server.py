"""The codec endpoint for the Temporal Web UI: `POST /codec/decode` (and `/codec/encode`) with Temporal's remote
codec protocol (a JSON `Payloads` body: `{"payloads": [{"metadata": {...base64}, "data": base64}]}`), served by the
webhook process when payload encryption is on (`security.payload_keys_file`). The Web UI is started with
`--ui-codec-endpoint http://<webhook>/codec` (`pitstop up` does this), so it shows decrypted inputs and results.

Who may decrypt: a browser page from an allowed origin (`security.codec_allowed_origins`, default the embedded Web
UI's) on a loopback client. In production, expose the endpoint only behind the same single sign-on as the Web UI
(a reverse proxy that authenticates users), never directly: whoever reaches it can decrypt any payload.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/codec/"
MAX_BODY_BYTES = 4 * 1024 * 1024
ALLOWED_HEADERS = b"content-type, x-namespace, authorization"


def default_origins(ui_port: int) -> list[str]:
    return [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class CodecEndpoint:
    """ASGI: `/codec/encode|decode` to the codec, everything else to `app` (the webhook)."""

    def __init__(self, app: ASGIApp, *, codec: PayloadCodec, allowed_origins: list[str]) -> None:
        self.app = app
        self.codec = codec
        self.allowed_origins = set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin", "")
        cors = self._cors(origin)
        client_host = (scope.get("client") or ("", 0))[0]
        if not _is_loopback(client_host) or (origin and origin not in self.allowed_origins):
            await _answer(send, 403, {"error": "codec endpoint: loopback clients and allowed Web UI origins only"}, [])
            return
        if scope["method"] == "OPTIONS":  # CORS preflight of the Web UI's fetch
            await _answer(send, 204, None, cors)
            return
        operation = scope["path"][len(PREFIX):]
        if scope["method"] != "POST" or operation not in ("encode", "decode"):
            await _answer(send, 404, {"error": "POST /codec/encode or /codec/decode"}, cors)
            return
        body = await _body(receive)
        if body is None:
            await _answer(send, 413, {"error": f"body above {MAX_BODY_BYTES} bytes"}, cors)
            return
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
            if operation == "decode":
                await self.codec.decode_wrapper(payloads)
            else:
                await self.codec.encode_wrapper(payloads)
        except (json_format.ParseError, ValueError) as exc:
            await _answer(send, 400, {"error": f"cannot {operation}: {exc}"}, cors)
            return
        await _answer(send, 200, json_format.MessageToDict(payloads), cors)

    def _cors(self, origin: str) -> list[tuple[bytes, bytes]]:
        if origin not in self.allowed_origins:
            return []
        return [(b"access-control-allow-origin", origin.encode()), (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", b"POST, OPTIONS"), (b"access-control-allow-headers", ALLOWED_HEADERS),
                (b"vary", b"origin")]


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: dict[str, Any] | None, headers: list[tuple[bytes, bytes]]) -> None:
    raw = json.dumps(body).encode() if body is not None else b""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()), *headers]})
    await send({"type": "http.response.body", "body": raw})
