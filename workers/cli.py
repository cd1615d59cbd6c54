"""The `pitstop` command line: entry point, global options, error handling, and the process commands.

Exit codes: 0 ok · 1 the operation failed (e.g. the runbook failed) · 2 bad input · 3 a dependency
(Temporal, Kubernetes, Prometheus) is unreachable · 4 not found. Errors are one line; `--debug` shows
the traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Annotated, Optional

import typer

from pitstop import __version__

from . import (cli_capacity, cli_catalog, cli_chaos, cli_delivery, cli_dr, cli_graph, cli_incidents, cli_keys,
               cli_policy, cli_runs, cli_sandbox, cli_schedules, cli_tokens)
from .cli_settings import load_settings
from .errors import CliError

app = typer.Typer(
    name="pitstop",
    help=(
        "pitstop: durable runbooks for Kubernetes fleets, executed by Temporal.\n\n"
        "Start the embedded stack with `pitstop up`, then `pitstop run RUNBOOK -i key=value`.\n"
        "Configuration: PITSTOP_* environment variables or ~/.config/pitstop/config.yaml "
        "(see `pitstop config show`).\n\n"
        "Exit codes: 0 ok, 1 operation failed, 2 bad input, 3 dependency unreachable, 4 not found."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect pitstop's configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_debug = False


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    global _debug
    _debug = debug


@app.command()
def version() -> None:
    """Print pitstop's version."""
    print(__version__)


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    data = load_settings().masked()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    import yaml

    print(yaml.safe_dump(data, sort_keys=False).rstrip())


@app.command()
def worker() -> None:
    """Run a pitstop worker (all workflows; activities for every configured region) until Ctrl-C."""
    from .temporal_connection import connect
    from .temporal_setup import ensure_ready
    from .tracing import shutdown_tracing
    from .worker import metrics_runtime, run_worker

    settings = load_settings()

    async def main() -> None:
        client = await connect(settings, runtime=metrics_runtime(settings.worker.metrics_port, settings.worker.metrics_host))
        await ensure_ready(client, settings)
        await run_worker(settings, client=client)

    try:
        asyncio.run(main())
    finally:
        shutdown_tracing()  # export the spans still batched


@app.command()
def setup() -> None:
    """Prepare the Temporal namespace for pitstop: register its search attributes (idempotent).

    Runs record RunbookName, TargetService, TargetNamespace, TargetRegion, Trigger, Phase (Keyword).

    Without them every run hangs (BadSearchAttributes), so `pitstop worker`, `up --temporal` and the webhook refuse.

    Adds what is missing to PITSTOP_TEMPORAL__NAMESPACE at PITSTOP_TEMPORAL__ADDRESS; changes nothing otherwise.

    A worker may do it itself with PITSTOP_TEMPORAL__REGISTER_SEARCH_ATTRIBUTES=true.

    Temporal Cloud refuses this: use its UI or `tcld namespace search-attributes add` (see README).
    """
    from .temporal_setup import run_setup

    asyncio.run(run_setup(load_settings()))


@app.command()
def up(
    temporal: Annotated[
        Optional[str],
        typer.Option("--temporal", help="Use this existing Temporal frontend (host:port) instead of starting one."),
    ] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox/--no-sandbox",
            help="Start the local fleet sandbox when no Kubernetes regions are configured.",
        ),
    ] = True,
    demo: Annotated[
        bool,
        typer.Option("--demo", help="Once up, start a canary release of a sandbox service (watch it in the Web UI)."),
    ] = False,
) -> None:
    """Start the embedded stack: Temporal dev server (+ Web UI), local fleet sandbox, worker, alert webhook.

    Everything runs as supervised child processes; Ctrl-C stops them (the sandbox's clusters keep running,
    `pitstop sandbox down` deletes them). State lives in the state dir, so a second `up` finds earlier runs.
    """
    from .up import run_up

    run_up(load_settings(), temporal_address=temporal, with_sandbox=sandbox, demo=demo)


cli_runs.register(app)
cli_catalog.register(app)
cli_sandbox.register(app)
cli_incidents.register(app)
cli_delivery.register(app)
cli_schedules.register(app)
cli_graph.register(app)
cli_keys.register(app)
cli_tokens.register(app)
cli_dr.register(app)
cli_capacity.register(app)
cli_chaos.register(app)
cli_policy.register(app)


def main() -> None:
    """Console-script entry: one clear line on error, then a hard exit (see STACK.md: interpreter-exit abort)."""
    code = 0
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int):
            code = result
    except CliError as exc:
        if _debug:
            traceback.print_exc()
        print(f"pitstop: error: {exc.message}", file=sys.stderr)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        print("pitstop: aborted", file=sys.stderr)
        code = 130
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            code = exc.exit_code
        else:
            if _debug:
                traceback.print_exc()
            print(f"pitstop: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
