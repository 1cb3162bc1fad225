"""`python -m gateway` starts one replica of the HTTP gateway."""

from mesh.service import serve

serve("gateway", "gateway.app:app")
