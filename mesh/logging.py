"""structlog configuration: JSON lines in production, a readable console on a terminal.

Every line carries the service name and, through contextvars, the trace id, the RPC
method and the acting principal of whatever request is being handled.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from mesh.settings import Settings


class _NamedPrintLogger(structlog.PrintLogger):
    """A print logger that remembers the name it was asked for (`get_logger(name)`)."""

    def __init__(self, file: Any, name: str | None = None) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(logger: Any, method_name: str, event_dict: Any) -> Any:
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def configure_logging(service: str, settings: Settings) -> None:
    """Configure structlog and the standard library logging for this process."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        # plain tracebacks: rich's would print local variables, which may hold key bytes
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    stream = sys.stderr
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *args: _NamedPrintLogger(stream, *args[:1]),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, force=True)
    # The database driver logs the server's warnings, which quote a statement's values
    # (a duplicate key's, of an INSERT IGNORE): those never go into the logs.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; `name` becomes the `logger` field."""
    return structlog.get_logger(name) if name else structlog.get_logger()
