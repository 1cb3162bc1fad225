"""`medihaven catalog …`: the medicine catalog (administrators load and edit it;
physicians search it)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli import profile
from cli.output import api_errors
from cli.sdk import ApiError, path

app = typer.Typer(help="The medicine catalog.", no_args_is_help=True)
SEED = Path(__file__).resolve().parents[1] / "services" / "records" / "catalog_seed.json"


@app.command()
@api_errors
def seed(file: Path = typer.Option(SEED, help="A catalog JSON file ({medicines: [...]}).")) -> None:
    """Load a catalog file; entries already present are left as they are.

    The default file is SAMPLE DATA for development, not clinical advice."""
    document = json.loads(file.read_text())
    if "notice" in document:
        typer.secho(document["notice"], fg="yellow")
    api = profile.client()
    added = existing = 0
    for details in document["medicines"]:
        try:
            api.post("/api/v1/catalog/medicines", {"details": details})
            added += 1
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing += 1
    typer.echo(f"{added} added, {existing} already in the catalog")


@app.command()
@api_errors
def search(
    prefix: str = typer.Argument("", help="Start of the name or the active ingredient."),
    type: str = typer.Option(None, help="e.g. antibiotic, analgesic."),
) -> None:
    found = profile.client().get("/api/v1/catalog/medicines", prefix=prefix, type=type)
    for m in found["medicines"]:
        d = m["details"]
        typer.echo(
            f"{m['medicine_id']}  {d['name']} {d['strength']} {d['dosage_form']} "
            f"({d['active_ingredient']}; {d['type']})"
        )


@app.command()
@api_errors
def retire(medicine_id: str) -> None:
    """No new prescriptions of this medicine (existing ones are unaffected)."""
    medicine = profile.client().post(
        path("/api/v1/catalog/medicines/{medicine_id}/retire", medicine_id=medicine_id)
    )
    typer.echo(f"{medicine['details']['name']} is retired")
