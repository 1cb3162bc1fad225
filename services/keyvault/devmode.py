"""Development mode (`make run`): initialise and unseal automatically. Never in production.

The shares are kept in a git-ignored folder (`var/dev-shares/`) on the developer's disk,
which defeats the point of Shamir's scheme; that is why this only runs when
`MEDIHAVEN_DEV_MODE` is set, and why it says so loudly in the log at every start.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mesh.errors import Conflict
from mesh.logging import get_logger
from services.keyvault.sealedbox import public_key_b64, seal_share
from services.keyvault.vault import Vault

log = get_logger("keyvault.devmode")

ROOT = Path(__file__).resolve().parents[2]
DEV_SHARES = ROOT / "var" / "dev-shares"
THRESHOLD, SHARES = 3, 5


def _write_shares(folder: Path, shares: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for index, share in enumerate(shares, start=1):
        path = folder / f"share-{index}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(share + "\n")


def _read_shares(folder: Path) -> list[str]:
    return [p.read_text().strip() for p in sorted(folder.glob("share-*.txt"))]


async def auto_unseal(vault: Vault, folder: Path = DEV_SHARES) -> None:
    log.warning(
        "keyvault.DEVELOPMENT_MODE",
        message="auto-initialising and auto-unsealing from shares on local disk; "
        "never use MEDIHAVEN_DEV_MODE in production",
        shares_folder=str(folder),
    )
    await vault.load()
    if vault.meta is None:
        try:
            shares = await vault.initialise(THRESHOLD, SHARES)
            _write_shares(folder, shares)
        except Conflict:
            await asyncio.sleep(1.0)  # another replica is initialising: use its shares
    shares = _read_shares(folder)
    if not shares:
        log.error("keyvault.dev_shares_missing", shares_folder=str(folder))
        return
    key = public_key_b64(vault.transport.public_key)
    for share in shares:
        if vault.state.value == "unsealed":
            break
        await vault.submit_share(seal_share(key, share))
    log.warning("keyvault.dev_unsealed", state=vault.state.value)
