"""`python -m bench` (`make bench`): every benchmark, each against its same-run baseline."""

from __future__ import annotations

import asyncio

from bench import catalog, chat, clinic, gateway, keyvault, records, rpc, scheduling


async def main() -> None:
    await rpc.run()
    await keyvault.run()
    await gateway.run()
    await scheduling.run()
    await records.run()
    await catalog.run()
    await chat.run()
    await clinic.run()


if __name__ == "__main__":
    asyncio.run(main())
