"""`medihaven fhir get …`: read the chart as a FHIR client does (signed, like every
request), e.g. `medihaven fhir get Patient/<id>/$everything` or
`medihaven fhir get Observation -p patient=<id> -p _count=5`.

`medihaven fhir export …`: the Bulk Data export, two administrators (one kicks off,
another approves), with a progress bar while it runs; `fetch` opens the sealed NDJSON
files here, with the recipient's private key, which never leaves this device."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from nacl.public import PrivateKey, SealedBox

from cli import profile
from cli.output import api_errors, show

app = typer.Typer(help="FHIR R4 reads (/fhir/R4).", no_args_is_help=True)
BASE = "/fhir/R4/"


def _params(values: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{value!r} is not name=value", param_hint="--param")
        params[name] = text
    return params


def _fail(response: httpx.Response) -> None:
    """An OperationOutcome's sentence on stderr, exit 1 (for any status >= 400)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    issues = body.get("issue", []) if isinstance(body, dict) else []
    text = "; ".join(i.get("diagnostics", "") for i in issues) or response.text[:500]
    typer.secho(f"error {response.status_code}: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
@api_errors
def get(
    resource: str = typer.Argument(..., help="e.g. metadata, Patient/<id>, Observation."),
    param: list[str] = typer.Option([], "--param", "-p", help="A search parameter name=value."),
) -> None:
    """A FHIR resource or Bundle as JSON; an OperationOutcome's text on error (exit 1)."""
    response = profile.client().request("GET", BASE + resource.lstrip("/"), None, _params(param))
    _fail(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if body is None:
        typer.echo(json.dumps({"status": response.status_code}))
        return
    show(body)


export = typer.Typer(help="Bulk Data $export: two administrators, sealed NDJSON.")
app.add_typer(export, name="export")
PROGRESS = re.compile(r"(\d+) of (\d+)")


@export.command("recipient-key")
def recipient_key(
    out: Path = typer.Option(..., "--out", help="Where to write the private key (0600)."),
) -> None:
    """Make the recipient's X25519 key pair: the private key stays in `out`; the public
    key, printed, goes into the kick-off."""
    key = PrivateKey.generate()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(bytes(key)).decode() + "\n")
    typer.echo(base64.b64encode(bytes(key.public_key)).decode())


@export.command("start")
@api_errors
def start(
    recipient: str = typer.Option(..., "--recipient", help="The recipient's X25519 public key."),
    group: str = typer.Option("", "--group", help="A physician's id: their patients in care."),
    types: str = typer.Option("", "--type", help="_type: resource types, comma-separated."),
    since: str = typer.Option("", "--since", help="_since: an instant, e.g. 2026-01-01T00:00Z."),
) -> None:
    """Kick off an export (it waits for another administrator's approval)."""
    path = f"Group/{group}/$export" if group else "Patient/$export"
    query = {k: v for k, v in (("_type", types), ("_since", since)) if v}
    response = profile.client().request(
        "POST", BASE + path, {"recipient_public_key": recipient}, query or None
    )
    _fail(response)
    location = response.headers["Content-Location"]
    show({"job_id": location.rsplit("/", 1)[1], "status": location})


@export.command("approve")
@api_errors
def approve(job_id: str = typer.Argument(...)) -> None:
    """Approve another administrator's export: it starts at once."""
    response = profile.client().request("POST", BASE + f"$export-approval/{job_id}", {})
    _fail(response)
    show({"job_id": job_id, "progress": response.headers.get("X-Progress", "")})


def _manifest(job_id: str, wait: bool, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Poll the status until the manifest (or once, without `wait`), drawing X-Progress
    ("patient 3 of 10") as a bar."""
    client = profile.client()
    deadline = time.monotonic() + timeout
    shown = 0
    with typer.progressbar(length=1, label="export", show_pos=True, file=sys.stderr) as bar:
        while True:
            response = client.request("GET", BASE + f"$export-status/{job_id}")
            _fail(response)
            if response.status_code == 200:
                bar.update(max((bar.length or shown) - shown, 0))
                manifest: dict[str, Any] = response.json()
                return manifest, "complete"
            text = response.headers.get("X-Progress", "")
            found = PROGRESS.search(text)
            if found:
                bar.length = max(int(found.group(2)), 1)
                bar.update(int(found.group(1)) - shown)
                shown = int(found.group(1))
            bar.label = text[:40]
            if not wait or time.monotonic() > deadline:
                return None, text
            time.sleep(0.5)


@export.command("status")
@api_errors
def status(
    job_id: str = typer.Argument(...),
    wait: bool = typer.Option(False, "--wait", help="Poll, with a progress bar, until done."),
    timeout: float = typer.Option(600.0, "--timeout", help="How long --wait waits (s)."),
) -> None:
    """The job's progress (X-Progress), or its manifest once it is complete."""
    manifest, progress = _manifest(job_id, wait, timeout)
    if manifest is None:
        typer.echo(f"not complete yet: {progress}", err=True)
        raise typer.Exit(2)
    show(manifest)


@export.command("fetch")
@api_errors
def fetch(
    job_id: str = typer.Argument(...),
    key: Path = typer.Option(..., "--key", help="The recipient's private key file."),
    out: Path = typer.Option(..., "--out", help="A folder for the opened NDJSON files."),
) -> None:
    """Download every file of a complete export and open it here (one .ndjson per type)."""
    manifest, progress = _manifest(job_id, True, 600.0)
    if manifest is None:
        typer.echo(f"not complete yet: {progress}", err=True)
        raise typer.Exit(2)
    box = SealedBox(PrivateKey(base64.b64decode(key.read_text().strip())))
    out.mkdir(parents=True, exist_ok=True)
    client = profile.client()
    opened: dict[str, list[bytes]] = {}
    counts: dict[str, int] = {}
    for output in manifest["output"]:
        path = output["url"].split(BASE, 1)[1]  # one file per type and page
        response = client.request("GET", BASE + path)
        _fail(response)
        opened.setdefault(output["type"], []).append(box.decrypt(response.content))
        counts[output["type"]] = counts.get(output["type"], 0) + output["count"]
    for kind, parts in opened.items():
        (out / f"{kind}.ndjson").write_bytes(b"".join(parts))
        typer.echo(f"{kind}: {counts[kind]} resources")
