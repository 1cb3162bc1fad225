"""What every staff command shares: readable errors and JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import typer

from cli.sdk import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def api_errors(fn: F) -> F:
    """Gateway errors as one readable line (and the reasons), exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            message = f"error {exc.status} ({exc.code}): {exc.message}"
            typer.secho(message, fg=typer.colors.RED, err=True)
            if exc.details:
                typer.echo(json.dumps(exc.details, indent=2), err=True)
            raise typer.Exit(1) from None
        except httpx.HTTPError as exc:
            typer.secho(f"cannot reach the gateway: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def show(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))
