"""Hostile webhook input for the fuzzers (hypothesis strategies) and how one case is judged.

Bodies: arbitrary bytes, arbitrary JSON (`st.recursive`, NaN/Infinity, huge integers, lone surrogates, two
encodings), nesting bombs, byte edits of a valid body, and mutations of a valid Alertmanager v4 payload
(fields deleted, replaced by any JSON value or a huge or odd string, extra fields, lists multiplied).
Requests, sent byte for byte on a raw socket: hostile credentials (Authorization bearer/basic,
X-Pitstop-Timestamp / X-Pitstop-Signature missing, wrong, stale, malformed, non-ASCII, huge, repeated) on a
well-framed POST; and, authenticated (bearer, basic or a fresh signature), hostile
framing: any method and path, Content-Type, Content-Length (missing, short, long, not a number, duplicated),
chunked bodies (well and badly framed), random extra headers.

`decoded_outcome(body)` runs the receiver's pure path (`decode_body`, `AlertmanagerWebhook`,
`notifications_from`, the journal's JSON round trip); `http_outcome(server, request)` sends a request to the
real webhook process (tests/fuzz/harness.py).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError

from pitstop.alerts import AlertmanagerWebhook, AlertNotification, BodyNotJson, decode_body, notifications_from
from pitstop.webhook_auth import sign
from pitstop.workers.webhook import ALERT_PATHS

from .harness import (
    HANG_SECONDS, Hang, Outcome, WebhookProcess, basic_password, escaped, paths_in, raw_request, within,
)

RECEIVED_AT = datetime(2026, 12, 1, tzinfo=timezone.utc)

# ------------------------------------------------------------------ strings and JSON values

any_character = st.characters(blacklist_categories=())  # controls, private use, unpaired surrogates included
odd_text = st.text(any_character, max_size=40)
plain_text = st.text(max_size=40)
huge_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\u202e", "\U0001f4a5", "\x00", "\\"]),
                      st.integers(1_000, 120_000))
texts = st.one_of(plain_text, plain_text, odd_text, huge_text)
numbers = st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False))


def json_values(*, nan: bool = False) -> st.SearchStrategy[Any]:
    """Any JSON-like value (NaN/Infinity as well when `nan`)."""
    scalars = st.one_of(st.none(), st.booleans(), numbers, plain_text, odd_text,
                        *([st.sampled_from([float("nan"), float("inf"), float("-inf")])] if nan else []))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.one_of(plain_text, odd_text), children, max_size=6)),
        max_leaves=30)


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """`value` as JSON bytes: ASCII-escaped or raw UTF-8 (lone surrogates then become invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ Alertmanager payloads

_offsets = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-(23 * 60 + 59), 23 * 60 + 59))
_times = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
    st.datetimes(timezones=_offsets),  # year 1 .. 9999, any offset
).map(lambda t: t.isoformat())
_label_names = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,20}\Z")


@st.composite
def alerts(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(["firing", "resolved"]))
    labels = {"alertname": draw(st.text(min_size=1, max_size=30)),
              **draw(st.dictionaries(_label_names, plain_text, max_size=5))}
    return {"status": status, "labels": labels,
            "annotations": draw(st.dictionaries(_label_names, plain_text, max_size=3)),
            "startsAt": draw(_times), "endsAt": draw(st.one_of(st.just("0001-01-01T00:00:00Z"), _times)),
            "generatorURL": draw(plain_text), "fingerprint": draw(st.from_regex(r"\A[0-9a-f]{1,32}\Z"))}


@st.composite
def alertmanager_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid version-4 webhook body."""
    items = draw(st.lists(alerts(), min_size=1, max_size=4))
    return {"version": "4", "groupKey": draw(plain_text), "truncatedAlerts": draw(st.integers(0, 10)),
            "status": items[0]["status"], "receiver": draw(st.text(max_size=20)), "groupLabels": {},
            "commonLabels": draw(st.dictionaries(_label_names, plain_text, max_size=3)), "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": items}


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        tree = tree[part]
    return tree


@st.composite
def mutated_payloads(draw: st.DrawFn) -> Any:
    """A valid payload after 1-4 mutations: a field deleted, replaced (any JSON, huge or odd text, another
    type), an extra field, a list multiplied (beyond `MAX_ALERTS_PER_NOTIFICATION` too)."""
    tree: Any = draw(alertmanager_payloads())
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths_in(tree)))
        operation = draw(st.sampled_from(["delete", "replace", "replace", "extra", "multiply"]))
        if operation == "replace" or (operation == "delete" and not path):
            value = draw(st.one_of(json_values(), texts, numbers, st.sampled_from([None, True, [], {}, "", "4", 4])))
            if not path:
                tree = value
            else:
                _parent(tree, path)[path[-1]] = value
        elif operation == "delete":
            del _parent(tree, path)[path[-1]]
        else:
            target = tree
            for part in path:
                target = target[part]
            if operation == "extra" and isinstance(target, dict):
                target[draw(st.one_of(plain_text, odd_text))] = draw(json_values())
            elif operation == "multiply" and isinstance(target, list) and target:
                small = len(repr(target[0])) < 2_000  # 1001 copies of a huge item: a body far over any limit
                copies = draw(st.sampled_from([2, 10, 1001] if small else [2, 10]))
                target[:] = [copy.deepcopy(target[0]) for _ in range(copies)]
    return tree


# ------------------------------------------------------------------ bodies


def nesting_bomb(depth: int, *, kind: str) -> bytes:
    return b"[" * depth + b"]" * depth if kind == "array" else b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def edited_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few bytes inserted, deleted or overwritten, or truncated."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["insert", "delete", "overwrite", "truncate"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if operation == "insert":
            data = data[:at] + chunk + data[at:]
        elif operation == "delete":
            data = data[:at] + data[at + len(chunk):]
        elif operation == "overwrite":
            data = data[:at] + chunk + data[at + len(chunk):]
        else:
            data = data[:at]
    return data


bodies: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=2_000),
    json_values(nan=True).flatmap(encoded),
    mutated_payloads().flatmap(encoded),
    mutated_payloads().flatmap(encoded),
    alertmanager_payloads().flatmap(encoded).flatmap(edited_bytes),
    st.builds(nesting_bomb, st.integers(1, 40_000), kind=st.sampled_from(["array", "object"])),
)


def decoded_outcome(body: bytes) -> Outcome:
    """The receiver's pure path over one body: parsed, refused (400 BodyNotJson / 422 ValidationError), an
    exception that escaped, or a hang. An accepted notification must survive the journal's JSON round trip."""
    try:
        return within(HANG_SECONDS, lambda: _decoded_outcome(body))
    except Hang as exc:
        return Outcome("hang", str(exc))


def _decoded_outcome(body: bytes) -> Outcome:
    try:
        data = decode_body(body)
    except BodyNotJson as exc:
        return Outcome("refused", f"400 {exc}")
    except Exception as exc:  # noqa: BLE001 - judged
        return escaped(exc)
    try:
        payload = AlertmanagerWebhook.model_validate(data)
    except ValidationError as exc:
        return Outcome("refused", f"422 {exc.error_count()} error(s)")
    except Exception as exc:  # noqa: BLE001 - judged
        return escaped(exc)
    try:
        notes = notifications_from(payload, received_at=RECEIVED_AT)
        for note in notes:
            replayed = AlertNotification.model_validate_json(note.model_dump_json())
            if replayed != note or replayed.incident_id != note.incident_id:
                return Outcome("traceback", f"journal round trip changed {note.incident_id}")
            _ = (note.alert.name, note.alert.severity, note.alert.resolved_at)
    except Exception as exc:  # noqa: BLE001 - judged
        return escaped(exc)
    return Outcome("ok", f"{len(notes)} notification(s)")


# ------------------------------------------------------------------ HTTP requests


@dataclass
class HttpRequest:
    """One request as bytes on the wire; `half_close` when it declares a longer body than it sends."""

    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    half_close: bool = False

    def wire(self) -> bytes:
        head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (self.method, self.path)
        head += b"".join(b"%s: %s\r\n" % (name, value) for name, value in self.headers)
        return head + b"\r\n" + self.body

    def __repr__(self) -> str:  # falsifying examples stay readable: long values shortened
        return (f"HttpRequest({self.method!r} {self.path[:80]!r} headers="
                f"{[(n[:40], v[:80] + (b'...' if len(v) > 80 else b'')) for n, v in self.headers]!r} "
                f"body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''} half_close={self.half_close})")


_raw_header_values = st.binary(max_size=200).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))
_printable_header_values = st.from_regex(rb"\A[\t -~]{0,200}\Z")
# mostly values HTTP allows (they reach the receiver), sometimes raw bytes (the HTTP parser's concern)
header_values = st.one_of(_printable_header_values, _printable_header_values, _printable_header_values,
                          _raw_header_values)
huge_values = st.builds(lambda c, n: c * n, st.sampled_from([b"a", b"\xff", b" "]), st.integers(1_000, 200_000))
one_in_ten = st.sampled_from([False] * 9 + [True])
_tokens = st.from_regex(rb"\A[!#$%&'*+.^_`|~0-9A-Za-z-]{1,30}\Z")


def _basic(user: bytes, password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


def signed_headers(token: str, body: bytes, *, at: int | None = None) -> list[tuple[bytes, bytes]]:
    """X-Pitstop-Timestamp (now unless `at`) and X-Pitstop-Signature of `body` keyed with `token`."""
    sent_at = int(time.time()) if at is None else at
    return [(b"X-Pitstop-Timestamp", str(sent_at).encode()),
            (b"X-Pitstop-Signature", sign(token.encode(), sent_at, body))]


def _authenticated(token: str, body: bytes) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.sampled_from([[(b"Authorization", b"Bearer " + token.encode())],
                            [(b"Authorization", _basic(b"fuzz", basic_password(token).encode()))],
                            signed_headers(token, body)])


def _hostile_authorizations(token: str, body: bytes) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    right = token.encode()
    values = st.one_of(_printable_header_values, _raw_header_values, huge_values)
    bearer = st.one_of(
        st.sampled_from([b"Bearer " + right, b"bearer  " + right + b" ", b"Bearer", b"Bearer ", b"Basic " + right,
                         b"Bearer " + right + b"\xff", b"Bearer " + right[:-1],
                         _basic(b"fuzz", basic_password(token).encode()), _basic(b"fuzz", right),
                         _basic(b"fuzz\xff", basic_password(token).encode()), b"Basic " + b"\xff" * 8,
                         b"Basic ====", b"Basic " + base64.b64encode(b"fuzz")]),
        values, values.map(lambda v: b"Bearer " + v), values.map(lambda v: b"Basic " + v))
    now = int(time.time())
    good = signed_headers(token, body, at=now)
    signed = st.one_of(
        st.sampled_from([good, signed_headers(token + "x", body, at=now), signed_headers(token, body, at=now - 10_000),
                         signed_headers(token, body, at=now + 10_000), signed_headers(token, body + b" ", at=now),
                         [good[0], (b"X-Pitstop-Signature", good[1][1].upper())],
                         [good[0], (b"X-Pitstop-Signature", good[1][1] + b"\xff")],
                         [good[0], (b"X-Pitstop-Signature", b"sha256=")], [good[1]], [good[0]]]),
        st.tuples(values, st.sampled_from([good[1][1], b"sha256=" + b"0" * 64]))
        .map(lambda p: [(b"X-Pitstop-Timestamp", p[0]), (b"X-Pitstop-Signature", p[1])]),
        values.map(lambda v: [good[0], (b"X-Pitstop-Signature", v)]),
        values.map(lambda v: [good[0], (b"X-Pitstop-Signature", b"sha256=" + v)]))
    return st.one_of(
        st.just([]),
        bearer.map(lambda v: [(b"Authorization", v)]),
        signed,
        st.tuples(bearer, signed).map(lambda p: [(b"Authorization", p[0]), *p[1]]),
        st.tuples(bearer, bearer).map(lambda p: [(b"Authorization", p[0]), (b"Authorization", p[1])]),
    )


_content_types = st.one_of(
    st.none(), st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"text/json", b"",
                                b"APPLICATION/JSON", b"text/plain", b"application/x-www-form-urlencoded",
                                b"multipart/form-data; boundary=x", b";;;", b"application/json\xff"]),
    header_values)


def _chunked(body: bytes, *, broken: bytes | None) -> bytes:
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 97]), body[i:i + 97]) for i in range(0, len(body), 97))
    return framed + (broken if broken is not None else b"0\r\n\r\n")


@st.composite
def hostile_auth_requests(draw: st.DrawFn, token: str) -> HttpRequest:
    """A well-framed POST of a valid payload with missing, wrong, malformed, huge or repeated credentials."""
    body = draw(alertmanager_payloads().flatmap(encoded))
    headers = draw(_hostile_authorizations(token, body))
    headers += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
    path = draw(st.sampled_from([p.encode() for p in ALERT_PATHS]))
    return HttpRequest(b"POST", path, draw(st.permutations(headers)), body)


@st.composite
def hostile_framing_requests(draw: st.DrawFn, token: str) -> HttpRequest:
    """An authenticated request with hostile framing (Content-Length, chunking), Content-Type, method, path and
    extra headers; its body a valid payload or random bytes."""
    body = draw(st.one_of(alertmanager_payloads().flatmap(encoded), st.binary(max_size=300)))
    rare = draw(one_in_ten)  # an unusual method; an unusual path
    method = draw(st.sampled_from([b"GET", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]) | _tokens) if rare else b"POST"
    path = draw(st.sampled_from([b"/healthz", b"/alerts?x=1", b"//alerts", b"/alerts/", b"*", b"/%00",
                                 b"/alerts%2f..", b"http://127.0.0.1/alerts"]) | st.from_regex(rb"\A/[!-~]{0,60}\Z")) \
        if draw(one_in_ten) else draw(st.sampled_from([p.encode() for p in ALERT_PATHS]))
    headers = draw(_authenticated(token, body))
    content_type = draw(_content_types)
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    framing = draw(st.sampled_from(["length"] * 8 + ["none", "short", "long", "not a number", "negative", "huge",
                                                     "twice", "chunked", "chunked", "chunked broken",
                                                     "chunked and length"]))
    half_close = False
    if framing in ("length", "chunked and length"):
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "short" and body:
        headers.append((b"Content-Length", str(draw(st.integers(0, len(body) - 1))).encode()))
    elif framing == "long":
        headers.append((b"Content-Length", str(len(body) + draw(st.integers(1, 10_000))).encode()))
        half_close = True
    elif framing == "not a number":
        headers.append((b"Content-Length", draw(st.sampled_from([b"abc", b"1e3", b"+5", b" 5 ", b"0x10", b"",
                                                                 b"\xd9\xa3", b"5, 5"]))))
        half_close = True
    elif framing == "negative":
        headers.append((b"Content-Length", b"-1"))
    elif framing == "huge":
        headers.append((b"Content-Length", draw(st.sampled_from([b"1048577", b"99999999999999999999999",
                                                                 b"9" * 400]))))
        half_close = True
    elif framing == "twice":
        headers += [(b"Content-Length", str(len(body)).encode()), (b"Content-Length", b"1")]
    if framing.startswith("chunked"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        broken = draw(st.sampled_from([b"zz\r\n", b"5\r\nab", b"0\r\n", b"ffffffffffffffff\r\n"])) \
            if framing == "chunked broken" else None
        body = _chunked(body, broken=broken)
        half_close = broken is not None
    for _ in range(draw(st.integers(0, 2))):
        headers.insert(draw(st.integers(0, len(headers))), (draw(_tokens), draw(header_values)))
    return HttpRequest(method, path, headers, body, half_close)


def authorized_post(token: str, body: bytes) -> HttpRequest:
    """A well-framed, authenticated POST /alerts of `body`."""
    return HttpRequest(b"POST", b"/alerts", [(b"Authorization", b"Bearer " + token.encode()),
                                              (b"Content-Type", b"application/json"),
                                              (b"Content-Length", str(len(body)).encode())], body)


def http_outcome(server: WebhookProcess, request: HttpRequest) -> Outcome:
    """One request to the real receiver: 2xx ok; 4xx (or a connection closed without an answer) refused;
    5xx; hang; or the receiver died."""
    try:
        status, answer = raw_request(server.port, request.wire(), half_close=request.half_close)
    except Hang as exc:
        return Outcome("hang", str(exc))
    except ConnectionRefusedError:
        return Outcome("traceback", f"the receiver stopped listening: {server.log()[-3000:]}")
    if not server.alive():
        return Outcome("traceback", f"the receiver died ({server.process.returncode}): {server.log()[-3000:]}")
    if status is None:
        return Outcome("refused", "connection closed without an answer")
    if status >= 500:
        return Outcome("5xx", f"{status} {answer[:300]!r}")
    return Outcome("ok" if status < 300 else "refused", f"{status} {answer[:200]!r}")
