"""The attacker's copy of a service's database: `mariadb-dump` (or `mysqldump`) of it."""

from __future__ import annotations

import shutil
import subprocess

from mesh.settings import Settings

DUMP = shutil.which("mariadb-dump") or shutil.which("mysqldump")
"""The dump tool on this machine, or None (the tests that need it say so)."""


def dump(settings: Settings, database: str, *extra: str, timeout_s: float = 60) -> bytes:
    """The SQL text of `database`, as the server holds it.

    `--single-transaction`: a consistent snapshot, as an operator dumps InnoDB, instead of
    LOCK TABLES, which waits behind any write a running service has open (a CI run once
    waited out the bound there). The rows dumped are the same.
    """
    assert DUMP is not None, "mariadb-dump / mysqldump is not installed"
    args = [DUMP, "--single-transaction", "-h", settings.db_host, "-P", str(settings.db_port)]
    args += ["-u", settings.db_user]
    password = settings.db_password.get_secret_value()
    if password:
        args.append(f"-p{password}")
    return subprocess.run(
        [*args, *extra, database], check=True, capture_output=True, timeout=timeout_s
    ).stdout
