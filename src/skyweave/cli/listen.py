"""``skyweave listen``: a private listener in its own process (``skyweave.listeners.process``)."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import StoreOpt, friendly
from skyweave.config.settings import load_settings
from skyweave.errors import DefinitionError


@friendly
def listen(
    pattern: Annotated[str, typer.Argument(help="Topics to hear, comma-separated fnmatch patterns: "
                                                "'activity.failed,run.*', 'product.created', '*'.")],
    target: Annotated[str | None, typer.Argument(
        help="A Python listener: path.py:NAME, module:NAME or a skyweave.listeners entry point.")] = None,
    exec_: Annotated[str | None, typer.Option(
        "--exec", help="Run this command per event: the event as JSON on stdin, its fields as "
                       "SKYWEAVE_* variables (not through a shell).")] = None,
    group: Annotated[str | None, typer.Option(
        help="Consumer group: where this listener's position is kept (default: listener:NAME).")] = None,
    bus: Annotated[str | None, typer.Option(
        help="Bus URL of the controller (default <store>/bus.db).")] = None,
    store: StoreOpt = None,
    retries: Annotated[int, typer.Option(help="Tries more after a failed handling before it is "
                                              "skipped.")] = 3,
    timeout: Annotated[float | None, typer.Option(help="Seconds a --exec command may run per event.")] = None,
) -> None:
    """Hear the controller's announcements in a process of your own, at least once each."""
    from skyweave.bus import open_bus
    from skyweave.listeners.base import load_listener
    from skyweave.listeners.process import (
        CommandHandler,
        Handler,
        ListenLoop,
        check_group,
        listener_handler,
        split_patterns,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    patterns = split_patterns(pattern)
    if (target is None) == (exec_ is None):
        raise DefinitionError("give either --exec CMD or a Python listener (path.py:NAME), not both or none",
                              hint="e.g. skyweave listen 'activity.failed' --exec ./page.sh --group pager")
    handler: Handler
    if exec_ is not None:
        command = CommandHandler(exec_, timeout_s=timeout)
        handler, name = command, command.argv[0].rsplit("/", 1)[-1]
    else:
        assert target is not None
        lst = load_listener(target)
        handler, name = listener_handler(lst), lst.name
    settings = load_settings(store=store, bus=bus)
    group = check_group(group or f"listener:{name}")  # before the bus is opened
    bus_ = open_bus(settings.bus_url(shared=True), aging_s=settings.aging_s,
                    max_deliveries=settings.max_deliveries)
    loop = ListenLoop(bus_, group, patterns, handler, retries=retries)

    def on_signal(_signum: int, _frame: object) -> None:
        loop.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop.join()
    output.err_console.print(f"listening to {', '.join(patterns)} on {loop.bus.url} as group {loop.group}")
    try:
        loop.run()
    finally:
        loop.bus.close()
        output.err_console.print(f"stopped: {loop.handled} event(s) handled, {loop.failed} skipped after "
                                 "failing")
