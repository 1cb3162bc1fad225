"""`python -m services.scheduling` starts one replica of the scheduling service."""

from mesh.service import serve

serve("scheduling", "services.scheduling.app:app")
