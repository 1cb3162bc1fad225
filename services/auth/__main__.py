"""`python -m services.auth` starts one replica of the auth service."""

from mesh.service import serve

serve("auth", "services.auth.app:app")
