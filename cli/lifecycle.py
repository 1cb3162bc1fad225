"""`medihaven vault rewrap | min-decryption | destroy | rekey | rotate-root | ceremony-…`:
the key lifecycle past rotation, as an administrator's signed requests to the gateway.

Rotate → rewrap every row online → refuse the retired keys (minimum decryption version)
→ destroy the keys no row uses. Rekeying the shares and rotating the root key are
ceremonies: the administrator who starts one receives the new shares, sealed to a key this
command makes for the occasion and forgets afterwards; K holders of current shares each
submit theirs (`medihaven vault ceremony-share`), sealed to the coordinating replica's own
key, so the gateway and the bus never see a share in clear.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

import typer
from nacl.public import PrivateKey

from cli import profile
from cli.output import api_errors, show
from cli.vault import app
from contracts import keyvault as kv
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

BAR_WIDTH = 30
POLL_S = 1.0


def progress_line(status: dict[str, Any]) -> str:
    """One line for a run's progress: bar, percentage, rows, rate and ETA (or its end)."""
    total, done = int(status.get("rows_total") or 0), int(status.get("rows_done") or 0)
    state = status.get("state") or "none"
    if state == "complete":
        fraction = 1.0
    else:
        fraction = min(done / total, 1.0) if total else 0.0
    filled = round(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    pending = status.get("services_pending") or []
    line = f"[{bar}] {fraction:4.0%} {done}/{total} rows"
    rate = float(status.get("rate_rows_per_s") or 0.0)
    if state == "running":
        line += f", {rate:.0f} rows/s"
        eta = status.get("eta_seconds")
        line += f", ETA {timedelta(seconds=round(eta))}" if eta is not None else ", ETA ?"
        if pending:
            line += f", waiting for {', '.join(pending)}"
    else:
        line += f", {state}"
    return line


def summary(status: dict[str, Any]) -> list[str]:
    """What a finished (or running) run did, per table, and what it could not move."""
    lines = []
    for t in status.get("tables", []):
        lines.append(
            f"  {t['service']:<10} {t['table']:<24} pass {t['pass_number']}: "
            f"{t['rows_rewrapped']} rows, {t['fields_rewrapped']} fields, "
            f"{t['macs_rewrapped']} MACs, {t['tokens_rewritten']} index tokens rewritten; "
            f"{t['rows_changed']} changed by users meanwhile, {t['rows_failed']} failed"
            + (" (done)" if t["done"] else "")
        )
    for failure in status.get("failures", []):
        lines.append(
            f"  not moved: {failure.get('service')} {failure['table']} {failure['pk']}: "
            f"{failure['reason']}"
        )
    in_use = status.get("retired_in_use") or {}
    if in_use:
        lines.append(f"  retired keys still in use (key: fields and tags): {in_use}")
    return lines


@app.command("rewrap")
@api_errors
def rewrap(
    status_only: bool = typer.Option(
        False, "--status", help="Only show the current (or last) run; start nothing."
    ),
    follow: bool = typer.Option(True, help="Follow the run's progress until it ends."),
    reindex: bool = typer.Option(
        False, help="Also recompute every blind index (automatic after a blind-index rotation)."
    ),
    batch_rows: int = typer.Option(200, help="Rows per transaction."),
    rows_per_second: int = typer.Option(2000, help="Throttle per service (0: no throttle)."),
    lease_seconds: float = typer.Option(15.0, help="How long a crashed replica holds the job."),
) -> None:
    """Rewrap every encrypted field and MAC'd row of every service under the active keys,
    online (administrators). Follows a run already going instead of starting another.
    Ctrl-C stops following; the run goes on."""
    api = profile.client()
    status: dict[str, Any] = api.get("/api/v1/vault/rewrap")
    if not status_only and status.get("state") != "running":
        status = api.post(
            "/api/v1/vault/rewrap",
            {
                "reindex": reindex,
                "batch_rows": batch_rows,
                "rows_per_second": rows_per_second,
                "lease_seconds": lease_seconds,
            },
        )
        typer.echo(f"rewrap {status['run_id']} started (reindex: {status['reindex']})")
    elif status.get("run_id") is None:
        typer.echo("no rewrap has run yet")
        return
    else:
        typer.echo(f"rewrap {status['run_id']} ({status['state']})")
    interactive = sys.stdout.isatty()
    try:
        while follow and not status_only and status.get("state") == "running":
            typer.echo("\r" + progress_line(status), nl=not interactive)
            time.sleep(POLL_S)
            status = api.get("/api/v1/vault/rewrap")
    except KeyboardInterrupt:
        typer.echo("\nno longer following: the run goes on (medihaven vault rewrap --status)")
        raise typer.Exit(0) from None
    if interactive and follow and not status_only:
        typer.echo("")
    typer.echo(progress_line(status))
    for line in summary(status):
        typer.echo(line)
    if status.get("failures") or status.get("state") == "cancelled":
        raise typer.Exit(1)


@app.command("rewrap-cancel")
@api_errors
def rewrap_cancel() -> None:
    """Cancel the running rewrap (what each service already committed stays done)."""
    status = profile.client().post("/api/v1/vault/rewrap/cancel", {})
    typer.echo(progress_line(status))


@app.command("min-decryption")
@api_errors
def min_decryption(
    purpose: kv.KeyPurpose = typer.Option(None, help="data, integrity or blind_index."),
    min_key_id: int = typer.Option(None, help="Keys of the purpose below it are refused."),
    min_field_version: int = typer.Option(None, help="Older field envelopes are refused."),
    force: bool = typer.Option(
        False, help="Even without a complete rewrap proving no row needs them."
    ),
) -> None:
    """Refuse older keys (or envelopes) before destroying them; lowering it again allows
    them again (administrators)."""
    body: dict[str, Any] = {"force": force}
    if purpose is not None:
        body["purpose"] = purpose.value
    if min_key_id is not None:
        body["min_key_id"] = min_key_id
    if min_field_version is not None:
        body["min_field_version"] = min_field_version
    show(profile.client().post("/api/v1/vault/min-decryption", body))


@app.command("destroy")
@api_errors
def destroy(key_id: int = typer.Argument(..., help="The retired key's id.")) -> None:
    """Destroy a retired key no row uses (proved by the last complete rewrap and each
    service's fresh scan); its wrapped copy is deleted (administrators)."""
    reply = profile.client().post(f"/api/v1/vault/keys/{key_id}/destroy", {})
    typer.echo(f"key {reply['key_id']} ({reply['purpose']}): {reply['state']}")
    for service, count in sorted(reply["checked"].items()):
        typer.echo(f"  {service}: {count} fields and tags under it")


def _ceremony(kind: kv.CeremonyKind, threshold: int, shares: int, wait_minutes: float) -> None:
    api = profile.client()
    recipient = PrivateKey.generate()
    started = api.post(
        "/api/v1/vault/ceremony",
        {
            "kind": kind.value,
            "threshold": threshold,
            "shares": shares,
            "recipient_public_key": public_key_b64(recipient.public_key),
        },
    )
    ceremony_id = started["ceremony_id"]
    typer.echo(
        f"ceremony {ceremony_id} ({kind.value} to {threshold} of {shares}) started on "
        f"{started['coordinator']}.\n{started['required']} holders of current shares now "
        "run: medihaven vault ceremony-share"
    )
    status = started
    deadline = time.monotonic() + wait_minutes * 60
    seen = -1
    try:
        while status["state"] == "collecting":
            if status["progress"] != seen:
                seen = status["progress"]
                typer.echo(f"  {seen} of {status['required']} current shares in")
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(POLL_S)
            status = api.get("/api/v1/vault/ceremony")
            if status.get("ceremony_id") != ceremony_id:
                typer.secho("the ceremony is no longer current", err=True)
                raise typer.Exit(1)
    except (KeyboardInterrupt, TimeoutError):
        api.post("/api/v1/vault/ceremony/cancel", {"ceremony_id": ceremony_id})
        typer.secho("\nnot enough shares: the ceremony is cancelled, nothing changed", err=True)
        raise typer.Exit(1) from None
    if status["state"] != "prepared":
        typer.secho(f"the ceremony is {status['state']}: nothing changed", err=True)
        raise typer.Exit(1)
    new_shares = [open_share(recipient, sealed) for sealed in status["sealed_shares"]]
    typer.echo(
        f"\nThe new shares ({threshold} of these {shares} unseal), shown once and stored "
        "nowhere. Give each to a different administrator.\n"
    )
    for number, share in enumerate(new_shares, start=1):
        typer.echo(f"share {number}: {share}")
    if not typer.confirm("\nCommit now? From then on only the new shares unseal", default=False):
        api.post("/api/v1/vault/ceremony/cancel", {"ceremony_id": ceremony_id})
        typer.echo("cancelled: the current shares stay valid")
        raise typer.Exit(1)
    committed = api.post(
        "/api/v1/vault/ceremony/commit",
        {
            "ceremony_id": ceremony_id,
            "instance": status["coordinator"],
            "shares_digest": kv.ceremony_digest(ceremony_id, new_shares),
        },
    )
    typer.echo(committed.get("message") or committed["state"])


@app.command("rekey")
@api_errors
def rekey(
    threshold: int = typer.Option(3, help="New shares needed to unseal (K)."),
    shares: int = typer.Option(5, help="New shares made (N)."),
    wait_minutes: float = typer.Option(30.0, help="How long to wait for the current shares."),
) -> None:
    """New shares (a new K-of-N) for the same root key; the old shares stop working, no
    ciphertext changes (administrators, with K current shares)."""
    _ceremony(kv.CeremonyKind.rekey, threshold, shares, wait_minutes)


@app.command("rotate-root")
@api_errors
def rotate_root(
    threshold: int = typer.Option(3, help="New shares needed to unseal (K)."),
    shares: int = typer.Option(5, help="New shares made (N)."),
    wait_minutes: float = typer.Option(30.0, help="How long to wait for the current shares."),
) -> None:
    """A new root key: every data key rewrapped under it, handed over to every unsealed
    replica, new shares issued, old shares dead (administrators, with K current shares)."""
    _ceremony(kv.CeremonyKind.rotate_root, threshold, shares, wait_minutes)


@app.command("ceremony-share")
@api_errors
def ceremony_share(
    share: str = typer.Option(
        None, help="Your current share (prompted, hidden, when omitted; '-' reads stdin)."
    ),
) -> None:
    """Submit your current share to the pending rekey or root rotation (sealed to the
    coordinating replica's own key)."""
    api = profile.client()
    status = api.get("/api/v1/vault/ceremony")
    if status.get("state") != "collecting":
        typer.secho("no ceremony is collecting shares", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"ceremony {status['ceremony_id']}: {status['kind']} to {status['threshold']} of "
        f"{status['shares']}, started by {status['started_by']}"
    )
    if share is None:
        share = typer.prompt("current share", hide_input=True)
    elif share == "-":
        share = sys.stdin.readline()
    reply = api.post(
        "/api/v1/vault/ceremony/share",
        {
            "ceremony_id": status["ceremony_id"],
            "instance": status["coordinator"],
            "sealed_share": seal_share(status["transport_public_key"], share.strip()),
        },
    )
    typer.echo(f"{reply['progress']} of {reply['required']} current shares in ({reply['state']})")


@app.command("ceremony-cancel")
@api_errors
def ceremony_cancel() -> None:
    """Cancel the pending rekey or root rotation: nothing changes."""
    api = profile.client()
    status = api.get("/api/v1/vault/ceremony")
    if status.get("state") not in ("collecting", "prepared"):
        typer.secho("no ceremony is pending", err=True)
        raise typer.Exit(1)
    reply = api.post("/api/v1/vault/ceremony/cancel", {"ceremony_id": status["ceremony_id"]})
    typer.echo(reply.get("message") or reply["state"])
