"""Where the CLI keeps a staff member's profile and encrypted key (default ~/.medihaven)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from cli import keys
from cli.sdk import MedihavenClient

DEFAULT_URL = "http://127.0.0.1:8000"


def home() -> Path:
    return Path(os.environ.get("MEDIHAVEN_HOME", Path.home() / ".medihaven"))


@dataclass
class Profile:
    base_url: str
    account_id: str
    username: str

    def save(self) -> None:
        home().mkdir(parents=True, exist_ok=True, mode=0o700)
        (home() / "profile.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


def key_path() -> Path:
    return home() / "key.pem"


def passphrase(confirm: bool = False) -> str:
    """From MEDIHAVEN_PASSPHRASE (automation), else asked for without echo."""
    value = os.environ.get("MEDIHAVEN_PASSPHRASE")
    if value:
        return value
    return str(typer.prompt("key passphrase", hide_input=True, confirmation_prompt=confirm))


def load_profile() -> Profile:
    path = home() / "profile.json"
    if not path.exists():
        typer.secho(
            f"no profile in {home()}: register first (medihaven register --token …)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    return Profile(**json.loads(path.read_text()))


def client() -> MedihavenClient:
    """A signing client for the registered staff member of this profile."""
    profile = load_profile()
    try:
        key = keys.load(key_path(), passphrase())
    except keys.KeyFileError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    return MedihavenClient(profile.base_url, profile.account_id, key)
