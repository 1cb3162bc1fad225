"""Operator access to the mesh over RabbitMQ, for commands that run before anyone can
sign a request (bootstrap, keyvault init and unseal) or that address every replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import aio_pika
import typer

from mesh.errors import RpcError
from mesh.rpc import RpcClient
from mesh.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def bus_client() -> AsyncIterator[RpcClient]:
    """An RPC client on the bus named by MEDIHAVEN_AMQP_URL."""
    settings = Settings()  # not the cached one: the CLI reads the environment each run
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value(), timeout=5)
    client = RpcClient(connection, settings.rpc_deadline_s)
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
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        typer.secho(
            f"cannot reach RabbitMQ (MEDIHAVEN_AMQP_URL): {exc}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from None
