"""Operator access to the mesh over RabbitMQ, for commands that run before anyone can
sign a request (bootstrap, keyvault init and unseal) or that address every replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import aio_pika
import typer

from contracts.base import OPERATOR
from mesh import amqp
from mesh.errors import RpcError
from mesh.rpc import RpcClient
from mesh.settings import DEV_SECRETS, Settings

T = TypeVar("T")


@asynccontextmanager
async def bus_client() -> AsyncIterator[RpcClient]:
    """An RPC client on the bus named by MEDIHAVEN_AMQP_URL, as the operator's identity
    (its password from MEDIHAVEN_AMQP_PASSWORD or the secrets folder; on a development
    machine, the folder `make run` made)."""
    settings = Settings()  # not the cached one: the CLI reads the environment each run
    if settings.secrets_dir() is None and (DEV_SECRETS / "amqp" / OPERATOR).is_file():
        settings = settings.model_copy(update={"amqp_secrets_dir": DEV_SECRETS / "amqp"})
    connection = await amqp.connect_once(settings.amqp_urls_for(OPERATOR), timeout=5)
    user = settings.broker_user(OPERATOR)
    client = RpcClient(
        connection, settings.rpc_deadline_s, user_id=user, user_of=settings.broker_user
    )
    try:
        await client.start()
        yield client
    finally:
        await client.close()
        await connection.close()


def run_on_bus(action: Callable[[RpcClient], Awaitable[T]]) -> T:
    """Run `action` with a bus client; RPC errors become a clear message and exit code 1."""

    async def main() -> T:
        async with bus_client() as client:
            return await action(client)

    try:
        return asyncio.run(main())
    except RpcError as exc:
        typer.secho(f"error ({exc.code}): {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except RuntimeError as exc:  # no broker password for the operator
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:  # TimeoutError too
        typer.secho(
            f"cannot reach RabbitMQ (MEDIHAVEN_AMQP_URL, _AMQP_NODES): {exc}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
