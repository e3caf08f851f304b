"""The ``imgpipe`` command: thin adapters that parse, call one thing, and report."""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.cli.common import err, keys_exist, require_current_schema, settings_or_exit
from imgpipe.cli.dlq import dlq_app
from imgpipe.cli.images import images_app
from imgpipe.cli.keys import keys_app
from imgpipe.cli.moderation import moderation_app
from imgpipe.cli.storage import storage_app
from imgpipe.config import Settings, usable_cpus

if TYPE_CHECKING:
    from imgpipe.cli.batch import ItemResult
    from imgpipe.container import Container

app = typer.Typer(
    name="imgpipe",
    help="Upload, validate, store and turn user images into web variants.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(dlq_app, name="dlq")
app.add_typer(images_app, name="images")
app.add_typer(storage_app, name="storage")
app.add_typer(moderation_app, name="moderation")

Host = Annotated[str, typer.Option(help="Address to bind.")]
Port = Annotated[int, typer.Option(help="Port to bind.")]
KeepAlive = Annotated[
    int | None,
    typer.Option(
        "--keep-alive",
        min=1,
        help="Seconds an idle keep-alive connection stays open (default IMGPIPE_KEEP_ALIVE_S, "
        "75); a load balancer's idle timeout must be shorter.",
    ),
]
ProxyHeaders = Annotated[
    bool,
    typer.Option(
        "--proxy-headers/--no-proxy-headers",
        help="Take the client address and scheme from X-Forwarded-For / -Proto, from the "
        "addresses in --forwarded-allow-ips only.",
    ),
]
ForwardedAllowIps = Annotated[
    str,
    typer.Option(
        "--forwarded-allow-ips",
        help="Comma-separated proxy addresses (or networks) whose X-Forwarded-* headers are "
        "trusted; '*' trusts everyone (only behind a private network).",
    ),
]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def _require_safe_bind(host: str, settings: Settings) -> None:
    """SPEC §4: with no API key, only a loopback bind may serve, as single-user mode."""
    if keys_exist(settings):
        err.print("imgpipe: API keys exist, so every /v1 request needs one.")
        return
    if _is_loopback(host) and settings.auth == "required":
        err.print(
            "imgpipe: IMGPIPE_AUTH=required and no API key exists yet: every /v1 request "
            "is refused until `imgpipe keys create --owner NAME` makes one."
        )
        return
    if _is_loopback(host):
        err.print(
            "[bold]imgpipe: single-user mode[/bold] - no API keys exist and the bind is "
            f"loopback ({host}), so every request acts as one owner. Bind another address "
            "only once API keys exist."
        )
        return
    err.print(
        f"[red]imgpipe: refusing to start on {host}: no API key exists, so anyone who can "
        "reach this address could read and delete every image. Bind 127.0.0.1, or create "
        "an API key first.[/red]"
    )
    raise typer.Exit(2)


def _logging(settings: Settings) -> None:
    from imgpipe.telemetry.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """All-in-one: API and in-process workers on the embedded defaults."""
    import uvicorn

    from imgpipe.api.app import create_app
    from imgpipe.container import build
    from imgpipe.services.moderation import recover_after_restart as recover_moderation
    from imgpipe.services.reconcile import recover_after_restart

    settings = settings_or_exit()
    _require_safe_bind(host, settings)
    _logging(settings)
    container = _build(build, settings)
    container.migrate()
    container.clean_staging()
    worker = container.embedded_worker()
    worker.start()
    if settings.embedded_queue:  # this process was the only worker: its leases are dead
        resumed = recover_after_restart(container.deps)
        if resumed:
            err.print(f"imgpipe: resumed {resumed} unfinished image(s) from the database")
        recover_moderation(container.deps)
    container.check_protection()
    housekeeping = container.housekeeping()
    for task in housekeeping:
        task.start()
    err.print(f"imgpipe: serving on http://{host}:{port} (docs at /docs)")
    try:
        uvicorn.run(
            create_app(container.deps),
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=settings.keep_alive_s,
        )
    finally:
        for task in housekeeping:
            task.stop()
        worker.stop()
        container.close()


@app.command()
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the port. Each runs its Python on one core at a "
            "time, so a busy render cache wants one per core. /metrics sums them all.",
        ),
    ] = 1,
    keep_alive: KeepAlive = None,
    proxy_headers: ProxyHeaders = False,
    forwarded_allow_ips: ForwardedAllowIps = "127.0.0.1",
) -> None:
    """The HTTP API alone; workers run separately (`imgpipe worker`)."""
    import uvicorn

    from imgpipe.api.app import create_app
    from imgpipe.container import build

    settings = settings_or_exit()
    if settings.embedded_queue:
        err.print(
            "[red]imgpipe api: IMGPIPE_BROKER_URL is empty, so no separate worker could "
            "receive jobs. Set a redis:// or amqp:// broker, or run `imgpipe serve`.[/red]"
        )
        raise typer.Exit(2)
    _require_safe_bind(host, settings)
    _logging(settings)
    container = _build(build, settings)
    require_current_schema(container)
    processes = f" ({workers} processes)" if workers > 1 else ""
    err.print(f"imgpipe: API on http://{host}:{port}{processes} (docs at /docs)")
    # Behind a load balancer or CDN: its idle timeout must be shorter than ours, and only
    # its addresses may say who the client is (docs/deploy.md, "Behind a load balancer").
    http = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "timeout_keep_alive": keep_alive or settings.keep_alive_s,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    if workers == 1:
        container.check_protection()
        uvicorn.run(create_app(container.deps), **http)  # type: ignore[arg-type]
        return
    # Each process builds its own container (cli/asgi.py); this one only supervises.
    container.close()
    from imgpipe.cli.runtime import prepare_multiprocess_metrics

    prepare_multiprocess_metrics()  # inherited by the processes: /metrics sums them all
    uvicorn.run(
        "imgpipe.cli.asgi:app_from_environment",
        factory=True,
        workers=workers,
        **http,  # type: ignore[arg-type]
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: the CPUs it may use).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics of all children on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: process, webhooks, moderate (default: all three, "
            "moderate only when MODERATION is on). A worker of its own for moderate keeps "
            "moderation off the variant slots."
        ),
    ] = None,
) -> None:
    """A Celery worker that makes variants (run N of them on M machines)."""
    from imgpipe.cli.runtime import (
        limit_malloc_arenas,
        prepare_multiprocess_metrics,
        serve_multiprocess_metrics,
    )

    settings = settings_or_exit()
    if settings.embedded_queue:
        err.print(
            "[red]imgpipe worker: IMGPIPE_BROKER_URL is empty; a separate worker needs a "
            "shared broker (redis:// or amqp://).[/red]"
        )
        raise typer.Exit(2)
    limit_malloc_arenas()
    if metrics_port is not None:
        prepare_multiprocess_metrics()  # before the metrics module is first imported
    from imgpipe.container import build

    _logging(settings)
    container = _build(build, settings)
    require_current_schema(container)
    container.check_protection()
    container.prepare_prefork()
    container.housekeeping_when_worker_ready()
    if metrics_port is not None:
        serve_multiprocess_metrics(metrics_port, metrics_host)
    argv = [
        "worker",
        f"--loglevel={settings.log_level.upper()}",
        f"--concurrency={concurrency or usable_cpus()}",
        # The recovery queue first: see jobs/celery_queue.py, RecoveryFirstCycle.
        f"--queues={_worker_queues(settings, queues)}",
        "--without-mingle",
        # A node name of its own: on RabbitMQ two workers sharing one (the default,
        # celery@host) fight over an exclusive control queue and one of them dies.
        f"--hostname={settings.queue_name}-{os.getpid()}@%h",
    ]
    # A worker that could not start its pool must exit non-zero, so a supervisor
    # restarts it.
    raise typer.Exit(container.workers.run(argv))


def _build(build: Callable[[Settings], Container], settings: Settings) -> Container:
    """The container; a setting that cannot work (a moderation model missing) stops the
    start with its name, not a traceback."""
    try:
        return build(settings)
    except ValueError as exc:
        err.print(f"[red]imgpipe: {exc}[/red]")
        raise typer.Exit(2) from None


def _worker_queues(settings: Settings, asked: str | None) -> str:
    default = ["process", "webhooks"] + (["moderate"] if settings.moderation != "off" else [])
    names = [n.strip() for n in asked.split(",") if n.strip()] if asked else default
    unknown = [n for n in names if n not in ("process", "webhooks", "moderate")]
    if unknown or not names:
        err.print(
            f"[red]imgpipe worker: --queues takes process, webhooks and moderate; "
            f"got {asked!r}[/red]"
        )
        raise typer.Exit(2)
    if "process" in names:  # re-handed and retried image jobs come first
        names.insert(0, "recover")
    return ",".join(f"{settings.queue_name}.{name}" for name in names)


@app.command()
def sign(
    url: Annotated[str, typer.Argument(metavar="URL-OR-PATH", help="/v1/render/ID?w=...")],
    expires_in: Annotated[
        int | None, typer.Option(min=1, help="Valid for this many seconds (sets exp).")
    ] = None,
    exp: Annotated[int | None, typer.Option(help="Valid until this Unix time.")] = None,
) -> None:
    """Sign an on-demand render URL (options put in canonical order first)."""
    from imgpipe.cli.sign import signed_url
    from imgpipe.domain.errors import BadRequest

    try:
        sys.stdout.write(signed_url(settings_or_exit(), url, expires_in, exp) + "\n")
    except BadRequest as exc:
        err.print(f"[red]imgpipe sign: {exc.detail}[/red]")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations (Alembic) up to the newest."""
    from imgpipe.resources import migrate, open_database

    engine = open_database(settings_or_exit())
    try:
        revision = migrate(engine)
    finally:
        engine.dispose()
    err.print(f"imgpipe: database at revision {revision}")


@app.command()
def process(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of images.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the variants.")],
    profiles: Annotated[
        str | None, typer.Option(help="Comma-separated profile names (default: all).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel processes (default: the CPUs it may use).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Batch mode: every image under PATH through the same engine, no server."""
    from imgpipe.cli.batch import BatchRunner, BatchSummary, collect_inputs, timed
    from imgpipe.domain.errors import BadRequest
    from imgpipe.resources import load_profiles

    settings = settings_or_exit()
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        err.print(f"[red]imgpipe process: no such file or folder: {', '.join(missing)}[/red]")
        raise typer.Exit(2)
    profile_set = load_profiles(settings)
    try:
        names = [n.strip() for n in profiles.split(",") if n.strip()] if profiles else None
        chosen = profile_set.select(names)
    except BadRequest as exc:
        err.print(f"[red]imgpipe process: {exc.detail}[/red]")
        raise typer.Exit(2) from None
    count = workers or usable_cpus()
    inputs = collect_inputs(paths, out)
    summary = BatchSummary(workers=count)
    started = time.perf_counter()
    runner = BatchRunner(
        inputs,
        chosen,
        settings.limits,
        settings.process_timeout_s,
        count,
        settings.watermarks_folder,
    )
    # The runner forks its worker processes before the progress bar starts its thread.
    bar = not as_json or sys.stderr.isatty()
    with runner, _reporter(len(inputs), bar=bar) as report:
        for result in timed(runner.results(), summary, started):
            report(result)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), indent=2) + "\n")
    else:
        _print_summary(summary)
    raise typer.Exit(1 if summary.failed else 0)


@contextmanager
def _reporter(total: int, *, bar: bool) -> Iterator[Callable[[ItemResult], None]]:
    """What the batch calls with each result: it advances a progress bar on standard
    error (when ``bar``) and prints each failure there, above the bar. Rich's progress
    is imported for the bar only: a --json run into a pipe starts 10 ms sooner."""
    if not bar:

        def report_failures(result: ItemResult) -> None:
            if not result.ok:
                err.print(_failure_line(result))

        yield report_failures
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err.console,
    ) as progress:
        task = progress.add_task("processing", total=total)

        def advance(result: ItemResult) -> None:
            progress.advance(task)
            if not result.ok:
                progress.console.print(_failure_line(result))

        yield advance


def _failure_line(result: ItemResult) -> str:
    from rich.markup import escape

    return (
        f"[yellow]failed[/yellow] {escape(str(result.source))}: {result.code}: "
        f"{escape(result.reason or '')}"
    )


def _print_summary(summary: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from imgpipe.cli.batch import BatchSummary

    assert isinstance(summary, BatchSummary)
    table = Table(title="imgpipe process", show_header=False)
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    for label, value in (
        ("images", f"{summary.images}"),
        ("succeeded", f"{summary.succeeded}"),
        ("failed", f"{summary.failed}"),
        ("bytes in", f"{summary.bytes_in:,}"),
        ("bytes out", f"{summary.bytes_out:,}"),
        ("seconds", f"{summary.seconds:.2f}"),
        ("images/s", f"{rate:.2f}"),
        ("workers", f"{summary.workers}"),
    ):
        table.add_row(label, value)
    out = Console(soft_wrap=True)  # a failure's path stays on one line in a file or pipe
    out.print(table)
    for failure in summary.failures:
        out.print(f"  {failure['source']}: {failure['code']}: {failure['reason']}", markup=False)


def main() -> None:
    """The ``imgpipe`` command: the console script and ``python -m imgpipe``."""
    # What the imports made (modules, pydantic's schemas: 36,000 objects the collector
    # tracks) lives as long as the process, so the collector skips it from here on
    # (gc.freeze). Its passes while a command runs, and the ones at exit, then scan only
    # what the command allocates: 5% of `imgpipe process`'s start-up instructions. A
    # process that forks (the worker's prefork pool, `imgpipe process --workers N`) also
    # keeps those pages shared with its children, the use the gc module documents.
    gc.freeze()
    app(prog_name="imgpipe")
