"""`medihaven`: the command line for staff (signed requests through the gateway) and for
operators (bootstrap and keyvault, over the bus)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cli import (
    attendance,
    catalog,
    fhir,
    keys,
    lifecycle,  # noqa: F401  (its commands join `medihaven vault`)
    records,
    scheduling,
    vault,
)
from cli.bus import run_on_bus
from cli.output import api_errors, show
from cli.profile import DEFAULT_URL, Profile, client, home, key_path, passphrase
from cli.sdk import MedihavenClient, path
from cli.sdk import register as register_key
from contracts import auth
from contracts.base import Role
from mesh.rpc import RpcClient

app = typer.Typer(help="Medihaven command line.", no_args_is_help=True)
token_app = typer.Typer(help="Registration tokens (administrators).", no_args_is_help=True)
staff_app = typer.Typer(help="Staff accounts (administrators).", no_args_is_help=True)
key_app = typer.Typer(help="Your own key.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator actions over the bus.", no_args_is_help=True)
chat_app = typer.Typer(help="Chat with other staff.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log (administrators).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(staff_app, name="staff")
app.add_typer(key_app, name="key")
app.add_typer(admin_app, name="admin")
app.add_typer(vault.app, name="vault")
app.add_typer(chat_app, name="chat")
app.add_typer(audit_app, name="audit")
app.add_typer(scheduling.app, name="schedule")
app.add_typer(records.patient_app, name="patient")
app.add_typer(records.encounter_app, name="encounter")
app.add_typer(records.rx_app, name="rx")
app.add_typer(catalog.app, name="catalog")
app.add_typer(fhir.app, name="fhir")
app.add_typer(attendance.app, name="attendance")

F = TypeVar("F", bound=Callable[..., Any])


@app.command()
@api_errors
def register(
    token: str = typer.Option(..., help="The registration token an administrator gave you."),
    username: str = typer.Option(..., help="Lower-case login name."),
    display_name: str = typer.Option(..., help="Your name as colleagues see it."),
    specialty: str = typer.Option(None, help="Physicians: specialty or department."),
    url: str = typer.Option(DEFAULT_URL, help="The gateway's URL."),
) -> None:
    """Make your key pair here, protect it with a passphrase, and register it."""
    if key_path().exists():
        typer.secho(f"{key_path()} exists: this device is already registered", err=True)
        raise typer.Exit(1)
    key = keys.generate()
    secret = passphrase(confirm=True)
    account = register_key(
        url,
        key,
        token=token,
        username=username,
        display_name=display_name,
        public_key=keys.public_key_b64(key),
        specialty=specialty,
    )
    keys.save(key, key_path(), secret)
    Profile(url, str(account["account_id"]), str(account["username"])).save()
    typer.echo(f"registered {account['username']} as {account['role']} (key in {home()})")


@app.command()
@api_errors
def me() -> None:
    """Who am I, and my role."""
    show(client().get("/api/v1/me"))


@token_app.command("issue")
@api_errors
def token_issue(
    role: Role = typer.Option(..., help="Role of the new staff member."),
    expires_hours: int = typer.Option(72, help="Hours until the token expires."),
) -> None:
    """Issue a single-use registration token (shown once)."""
    issued = client().post("/api/v1/tokens", {"role": role.value, "expires_hours": expires_hours})
    typer.echo(f"token for a {issued['role']} (expires {issued['expires_at']}), shown once:")
    typer.echo(issued["token"])


@token_app.command("list")
@api_errors
def token_list(
    state: auth.TokenState = typer.Option(None, help="Only tokens in this state."),
) -> None:
    for t in client().get("/api/v1/tokens", state=state.value if state else None)["tokens"]:
        typer.echo(f"{t['token_id']}  {t['role']:<13} {t['state']:<8} expires {t['expires_at']}")


@token_app.command("revoke")
@api_errors
def token_revoke(token_id: str) -> None:
    show(client().post(path("/api/v1/tokens/{token_id}/revoke", token_id=token_id)))


@staff_app.command("list")
@api_errors
def staff_list(role: Role = typer.Option(None, help="Only this role.")) -> None:
    for a in client().get("/api/v1/staff", role=role.value if role else None)["accounts"]:
        typer.echo(f"{a['account_id']}  {a['username']:<20} {a['role']:<13} {a['status']}")


def _set_status(account_id: str, status: str) -> None:
    account = client().put(
        path("/api/v1/staff/{account_id}/status", account_id=account_id), {"status": status}
    )
    typer.echo(f"{account['username']} is {account['status']}")


@staff_app.command("disable")
@api_errors
def staff_disable(account_id: str) -> None:
    """Disable an account: its requests are refused at once."""
    _set_status(account_id, "disabled")


@staff_app.command("enable")
@api_errors
def staff_enable(account_id: str) -> None:
    _set_status(account_id, "active")


@key_app.command("rotate")
@api_errors
def key_rotate() -> None:
    """Replace your key (the request is signed by the old one); asks for a new passphrase."""
    signer = client()
    new_key = keys.generate()
    signer.put("/api/v1/me/key", {"new_public_key": keys.public_key_b64(new_key)})
    keys.save(new_key, key_path(), passphrase(confirm=True))
    typer.echo("key rotated")


@admin_app.command("bootstrap")
def admin_bootstrap(
    expires_hours: int = typer.Option(72, help="Hours the token is valid."),
) -> None:
    """Print a one-time token for the first administrator (refused once one exists)."""

    async def action(rpc: RpcClient) -> auth.IssuedToken:
        return await rpc.call(
            auth.BOOTSTRAP,
            auth.BootstrapRequest(expires_hours=expires_hours),
            idempotency_key=str(uuid.uuid4()),
        )

    issued = run_on_bus(action)
    typer.echo(f"first administrator's registration token (expires {issued.expires_at}):")
    typer.echo(issued.token)


@vault.app.command("seal")
@api_errors
def vault_seal() -> None:
    """Seal every keyvault replica (administrators)."""
    for replica in client().post("/api/v1/vault/seal")["replicas"]:
        typer.echo(f"{replica['instance']}: {replica['state']}")


@vault.app.command("rotate")
@api_errors
def vault_rotate(
    add: int = typer.Option(16, help="Fresh data keys to add."),
    keep_old: bool = typer.Option(False, help="Keep current keys active for new encryptions."),
) -> None:
    """Add data keys and retire the current ones from new encryptions (administrators)."""
    show(client().post("/api/v1/vault/rotate", {"add": add, "retire_existing": not keep_old}))


@chat_app.command("send")
@api_errors
def chat_send(
    text: str,
    to: str = typer.Option(None, help="Account id of the colleague (direct conversation)."),
    conversation: str = typer.Option(None, help="Conversation id."),
) -> None:
    api = client()
    if conversation is None:
        if to is None:
            typer.secho("give --to ACCOUNT_ID or --conversation ID", err=True)
            raise typer.Exit(2)
        conversation = api.post("/api/v1/chat/direct", {"other_account_id": to})["conversation_id"]
    sent = api.post(
        path("/api/v1/chat/conversations/{conversation}/messages", conversation=conversation),
        {"text": text},
    )
    typer.echo(f"sent #{sent['message_id']} to {conversation}")


def _print_messages(messages: list[dict[str, Any]]) -> None:
    for m in messages:
        typer.echo(f"#{m['message_id']} {m['sent_at']} {m['sender_id']}: {m['text']}")


@chat_app.command("read")
@api_errors
def chat_read(
    conversation: str = typer.Option(None, help="Only this conversation."),
    after: int = typer.Option(None, help="Only messages after this id."),
) -> None:
    page = client().get("/api/v1/chat/messages", conversation_id=conversation, after_id=after)
    _print_messages(page["messages"])


@chat_app.command("watch")
@api_errors
def chat_watch(interval: float = typer.Option(2.0, help="Seconds between checks.")) -> None:
    """Print new messages as they arrive (Ctrl-C to stop)."""
    api = client()
    last = max(
        (c["last_message_id"] or 0 for c in api.get("/api/v1/chat/conversations")["conversations"]),
        default=0,
    )
    while True:
        page = api.get("/api/v1/chat/messages", after_id=last)
        _print_messages(page["messages"])
        if page["messages"]:
            last = page["messages"][-1]["message_id"]
        time.sleep(interval)


@audit_app.command("verify")
@api_errors
def audit_verify(
    full: bool = typer.Option(
        False, "--full", help="Walk the whole chain from its first entry (with progress)."
    ),
) -> None:
    """Verify the hash chain since the last verified mark (or all of it, --full); name the
    first entry that was edited, inserted or deleted."""
    api = client()
    if full:
        _full_walk(api)
        return
    result = api.get("/api/v1/audit/verify")
    if result["ok"]:
        typer.echo(
            f"ok: entries {result['since_seq'] + 1}..{result['head_seq']} verified "
            f"(up to {result['since_seq']} before), {result['checkpoints']} MAC'd checkpoints"
        )
        return
    typer.secho(f"BROKEN at entry {result['first_bad_seq']}: {result['problem']}", fg="red")
    raise typer.Exit(1)


def _full_walk(api: MedihavenClient) -> None:
    walk = api.post("/api/v1/audit/verify/full")
    with typer.progressbar(length=max(walk["total"], 1), label="verifying the chain") as bar:
        done = 0
        while walk["state"] == "running":
            bar.update(walk["checked"] - done)
            done = walk["checked"]
            time.sleep(1)
            walk = api.get("/api/v1/audit/verify/full")
        bar.update(max(walk["total"], 1) - done)
    if walk["state"] == "passed":
        typer.echo(f"ok: the whole chain, {walk['checked']} entries, verifies")
        return
    typer.secho(f"BROKEN at entry {walk['first_bad_seq']}: {walk['problem']}", fg="red")
    raise typer.Exit(1)


@audit_app.command("query")
@api_errors
def audit_query(
    patient: str = typer.Option(None, help="Patient id."),
    account: str = typer.Option(None, help="Staff account id."),
    action: str = typer.Option(None, help="C, R, U, D or E."),
    outcome: str = typer.Option(None, help="success, refused or failure."),
    limit: int = typer.Option(50),
) -> None:
    page = client().get(
        "/api/v1/audit/events",
        patient_id=patient,
        account_id=account,
        action=action,
        outcome=outcome,
        limit=limit,
        sort="recorded",
        descending="true",
    )
    for entry in page["entries"]:
        e = entry["event"]
        who = e["agent"]["account_id"] or "-"
        typer.echo(
            f"#{entry['seq']} {e['recorded']} {e['action']} {e['outcome']:<8} {e['type']:<28} "
            f"by {who} patient {e['patient_id'] or '-'}"
        )
    typer.echo(f"({len(page['entries'])} of {page['total']})")


@audit_app.command("export")
@api_errors
def audit_export(patient: str = typer.Option(None, help="Patient id.")) -> None:
    """FHIR AuditEvent NDJSON on standard output."""
    response = client().request("GET", "/api/v1/audit/export", None, {"patient_id": patient})
    if response.status_code >= 400:
        typer.secho(response.text, fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(response.text, nl=False)


if __name__ == "__main__":
    app()
