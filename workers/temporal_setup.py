"""Is the Temporal namespace ready for pitstop? Its custom search attributes, checked and registered.

Every runbook run upserts pitstop's search attributes (`SEARCH_ATTRIBUTES`: RunbookName, TargetService, ...).
On a namespace that lacks them each workflow task fails with BadSearchAttributes and the run hangs RUNNING
forever, so the worker, `pitstop up --temporal ADDR` and the webhook check at start (`ensure_ready`), and
`pitstop setup` registers what is missing (`setup_namespace`, idempotent). A process started with
`temporal.register_search_attributes: true` registers them itself instead of refusing.

The embedded dev server is started with them (workers/devserver.py). Temporal Cloud does not let clients
register search attributes: add them in the Cloud UI or with `tcld` (see `cloud_hint`).

`search_attribute_gap` (what is missing or registered with another type) and the messages are pure; the
rest is the I/O around them, through the operator service of the one Temporal client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from pitstop.config import Settings

from .devserver import SEARCH_ATTRIBUTES
from .errors import EXIT_UNAVAILABLE, EXIT_USAGE, CliError

RPC_TIMEOUT = timedelta(seconds=5)  # each check is one or two quick calls; never hang a start on them
VISIBLE_WAIT_SECONDS = 10.0  # after registering, how long to wait until the server lists them
REGISTER_SETTING = "PITSTOP_TEMPORAL__REGISTER_SEARCH_ATTRIBUTES=true"

# "Keyword" <-> IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, for every kind Temporal knows
_KINDS: dict[str, IndexedValueType.ValueType] = {
    name.removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", ""): value
    for name, value in IndexedValueType.items()
    if value != IndexedValueType.INDEXED_VALUE_TYPE_UNSPECIFIED
}
_KIND_NAMES: dict[IndexedValueType.ValueType, str] = {value: name for name, value in _KINDS.items()}


@dataclass(frozen=True)
class SearchAttributeGap:
    """What a namespace lacks: attributes to register (name -> kind) and ones registered with another kind."""

    missing: dict[str, str] = field(default_factory=dict)
    wrong_kind: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (needed, registered)

    @property
    def ready(self) -> bool:
        return not self.missing and not self.wrong_kind


def search_attribute_gap(required: Mapping[str, str], registered: Mapping[str, str]) -> SearchAttributeGap:
    """Compare the attributes pitstop needs (name -> kind) with those the namespace has (name -> kind)."""
    missing = {name: kind for name, kind in required.items() if name not in registered}
    wrong = {name: (kind, registered[name]) for name, kind in required.items()
             if name in registered and registered[name] != kind}
    return SearchAttributeGap(missing=missing, wrong_kind=wrong)


def cloud_hint(namespace: str, attributes: Mapping[str, str]) -> str:
    """How to add the attributes on Temporal Cloud, which refuses the operator API to clients."""
    flags = " ".join(f"--search-attribute '{name}={kind}'" for name, kind in attributes.items())
    return f"tcld namespace search-attributes add --namespace {namespace}.<account> {flags}"


def not_ready_message(gap: SearchAttributeGap, *, namespace: str, address: str) -> str:
    """One actionable paragraph: the namespace, the attributes, the command that fixes it."""
    parts: list[str] = []
    if gap.missing:
        parts.append(
            f"Temporal namespace {namespace!r} at {address} lacks pitstop's search attributes "
            f"{', '.join(gap.missing)} ({'/'.join(sorted(set(gap.missing.values())))}); runs would hang with "
            f"BadSearchAttributes. Run `pitstop setup` to register them (or set {REGISTER_SETTING} for this "
            f"process; on Temporal Cloud: `{cloud_hint(namespace, gap.missing)}` or the Cloud UI)."
        )
    for name, (needed, registered) in gap.wrong_kind.items():
        parts.append(
            f"Search attribute {name!r} in namespace {namespace!r} is registered as {registered} but pitstop needs "
            f"{needed}: remove it (`temporal operator search-attribute delete --name {name} -n {namespace}`), "
            "then run `pitstop setup`."
        )
    return " ".join(parts)


async def registered_search_attributes(client: Client, *, namespace: str) -> dict[str, str]:
    """The namespace's custom search attributes (name -> kind); CliError if the namespace does not exist."""
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace),
                                                         timeout=RPC_TIMEOUT)
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace), timeout=RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_problem(exc, client=client, namespace=namespace) from exc
    return {name: _KIND_NAMES.get(kind, str(kind)) for name, kind in listed.custom_attributes.items()}


async def namespace_gap(client: Client, *, namespace: str) -> SearchAttributeGap:
    return search_attribute_gap(SEARCH_ATTRIBUTES, await registered_search_attributes(client, namespace=namespace))


async def setup_namespace(client: Client, *, namespace: str) -> dict[str, str]:
    """Register the missing attributes (idempotent); return what was added (empty: nothing to do).

    Raises CliError when an attribute has another kind (needs a human) or the server refuses."""
    gap = await namespace_gap(client, namespace=namespace)
    if gap.wrong_kind:
        raise CliError(not_ready_message(SearchAttributeGap(wrong_kind=gap.wrong_kind), namespace=namespace,
                                         address=_address(client)), exit_code=EXIT_USAGE)
    if not gap.missing:
        return {}
    request = AddSearchAttributesRequest(
        namespace=namespace, search_attributes={name: _KINDS[kind] for name, kind in gap.missing.items()})
    try:
        await client.operator_service.add_search_attributes(request, timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:  # another process registered them at the same time
            raise _rpc_problem(exc, client=client, namespace=namespace, adding=gap.missing) from exc
    await _wait_listed(client, namespace=namespace)
    return gap.missing


async def ensure_ready(client: Client, settings: Settings) -> dict[str, str]:
    """At a process start: CliError naming what is missing and `pitstop setup`, unless the setting
    `temporal.register_search_attributes` lets this process register it (then: what it added)."""
    namespace = settings.temporal.namespace
    if settings.temporal.register_search_attributes:
        added = await setup_namespace(client, namespace=namespace)
        report_registered(added, namespace=namespace)
        return added
    gap = await namespace_gap(client, namespace=namespace)
    if not gap.ready:
        raise CliError(not_ready_message(gap, namespace=namespace, address=_address(client)), exit_code=EXIT_USAGE)
    return {}


async def _wait_listed(client: Client, *, namespace: str) -> None:
    deadline = asyncio.get_running_loop().time() + VISIBLE_WAIT_SECONDS
    while True:
        gap = await namespace_gap(client, namespace=namespace)
        if gap.ready:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise CliError(f"registered pitstop's search attributes in {namespace!r}, but the server still does "
                           f"not list {', '.join(gap.missing)} after {VISIBLE_WAIT_SECONDS:.0f}s", exit_code=1)
        await asyncio.sleep(0.2)


def _address(client: Client) -> str:
    return client.service_client.config.target_host


def _rpc_problem(exc: RPCError, *, client: Client, namespace: str, adding: Mapping[str, str] | None = None) -> CliError:
    address = _address(client)
    if exc.status == RPCStatusCode.NOT_FOUND:
        return CliError(
            f"Temporal namespace {namespace!r} does not exist at {address}: create it "
            f"(`temporal operator namespace create -n {namespace} --address {address}`; on Temporal Cloud in the "
            "Cloud UI) or point PITSTOP_TEMPORAL__NAMESPACE at an existing one, then run `pitstop setup`.",
            exit_code=EXIT_USAGE)
    if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.UNAUTHENTICATED):
        hint = f" On Temporal Cloud add them with `{cloud_hint(namespace, adding)}` or in the Cloud UI." if adding else ""
        return CliError(f"Temporal at {address} refused {'registering' if adding else 'listing'} the search "
                        f"attributes of namespace {namespace!r}: {exc.message}.{hint}", exit_code=EXIT_USAGE)
    return CliError(f"cannot check Temporal namespace {namespace!r} at {address}: {exc.message}",
                    exit_code=EXIT_UNAVAILABLE)


def report_registered(added: Mapping[str, str], *, namespace: str) -> None:
    if added:
        print(f"registered search attributes {', '.join(f'{n} ({k})' for n, k in added.items())} "
              f"in namespace {namespace!r}", flush=True)


async def run_setup(settings: Settings) -> None:
    """`pitstop setup`: connect, register what is missing, say what changed."""
    from .temporal_connection import connect

    namespace = settings.temporal.namespace
    added = await setup_namespace(await connect(settings), namespace=namespace)
    if not added:
        print(f"namespace {namespace!r} already has pitstop's search attributes "
              f"({', '.join(SEARCH_ATTRIBUTES)}); nothing to do", flush=True)
    report_registered(added, namespace=namespace)
