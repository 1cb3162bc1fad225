"""The keyvault's own attendance check, before it decrypts or blind-indexes anything.

The gateway checks attendance too, but a taken-over gateway (or any service sending
straight on the bus) could skip that; here the rule (`mesh/attendance.py`) is applied
again to the operation rebuilt from the user's own signature, with the duty state asked
of auth afresh, so an off-duty signer's request yields no plaintext, forged or not.
"""

from __future__ import annotations

from mesh import attendance
from mesh.context import CallContext
from mesh.proofs import Operation


async def require_duty(ctx: CallContext, operation: Operation) -> None:
    """Raise OffDuty (403) or Unavailable (503) unless the signer may be served now."""
    assert ctx.runtime is not None
    await attendance.enforce(ctx.runtime, operation.principal, operation.method, operation.request)
