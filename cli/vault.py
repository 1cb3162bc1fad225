"""`medihaven vault …`: initialise, unseal and inspect the keyvault as an operator.

These run over the bus (operator access), since they are needed before any staff member
exists. Shares never travel in clear: `init` receives them sealed to a key this command
makes for the occasion, and `unseal` seals each share to the replica's own transport key.
Sealing and key rotation are administrator actions through the gateway.
"""

from __future__ import annotations

import sys

import typer
from nacl.public import PrivateKey

from cli.bus import run_on_bus
from contracts import keyvault as kv
from mesh.rpc import RpcClient
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

app = typer.Typer(help="Keyvault operations (operator access over the bus).", no_args_is_help=True)

GATHER_WINDOW_S = 0.5


async def replica_statuses(client: RpcClient) -> list[kv.StatusReply]:
    replies = await client.gather(kv.STATUS, kv.StatusRequest(), window_s=GATHER_WINDOW_S)
    return sorted((r for r in replies if isinstance(r, kv.StatusReply)), key=lambda s: s.instance)


@app.command()
def status() -> None:
    """Show every keyvault replica: sealed or not, unseal progress, keys."""

    async def action(client: RpcClient) -> list[kv.StatusReply]:
        return await replica_statuses(client)

    statuses = run_on_bus(action)
    if not statuses:
        typer.echo("no keyvault replica answered")
        raise typer.Exit(1)
    for s in statuses:
        progress = f" ({s.progress} of {s.threshold} shares)" if s.state == "sealed" else ""
        typer.echo(f"{s.instance}: {s.state.value}{progress}")
    keys = statuses[0].keys
    if keys:
        first = statuses[0]
        active = sum(k.state is kv.KeyState.active for k in keys)
        typer.echo(f"keys: {len(keys)} ({active} active); root key generation {first.generation}")
        if first.min_decryption or first.min_field_version > 1:
            minimum = ", ".join(f"{p.value} {v}" for p, v in sorted(first.min_decryption.items()))
            typer.echo(
                f"minimum decryption: {minimum or 'none'}; envelope {first.min_field_version}"
            )
        for k in keys:
            refused = "" if k.decrypts or k.state is kv.KeyState.destroyed else " (refused)"
            typer.echo(
                f"  {k.key_id:>4} {k.purpose.value:<12} {k.state.value:<9} uses {k.use_count}"
                + refused
            )


@app.command()
def init(
    threshold: int = typer.Option(3, help="Shares needed to unseal (K)."),
    shares: int = typer.Option(5, help="Shares made (N), one per administrator."),
) -> None:
    """Initialise the keyvault and print the N shares ONCE: hand one to each administrator."""
    operator = PrivateKey.generate()

    async def action(client: RpcClient) -> kv.InitReply:
        return await client.call(
            kv.INIT,
            kv.InitRequest(
                threshold=threshold,
                shares=shares,
                recipient_public_key=public_key_b64(operator.public_key),
            ),
        )

    reply = run_on_bus(action)
    typer.echo(
        f"The keyvault is initialised: {reply.threshold} of these {reply.shares} shares "
        "unseal it.\n"
        "They are shown once and stored nowhere. Give each to a different administrator.\n"
    )
    for number, sealed in enumerate(reply.sealed_shares, start=1):
        typer.echo(f"share {number}: {open_share(operator, sealed)}")


@app.command()
def unseal(
    share: str = typer.Option(
        None, help="Your share (prompted, hidden, when omitted; '-' reads standard input)."
    ),
) -> None:
    """Submit your share to EVERY sealed keyvault replica (each is unsealed on its own)."""
    if share is None:
        share = typer.prompt("share", hide_input=True)
    elif share == "-":
        share = sys.stdin.readline()
    text = share.strip()

    async def action(client: RpcClient) -> list[str]:
        lines = []
        for status in await replica_statuses(client):
            if status.state is not kv.VaultState.sealed:
                lines.append(f"{status.instance}: {status.state.value}")
                continue
            reply = await client.call(
                kv.UNSEAL,
                kv.UnsealRequest(sealed_share=seal_share(status.transport_public_key, text)),
                instance=status.instance,
            )
            lines.append(f"{status.instance}: {reply.message or reply.state.value}")
        return lines

    lines = run_on_bus(action)
    if not lines:
        typer.echo("no keyvault replica answered")
        raise typer.Exit(1)
    for line in lines:
        typer.echo(line)
