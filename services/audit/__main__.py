"""`python -m services.audit` starts one replica of the audit service."""

from mesh.service import serve

serve("audit", "services.audit.app:app")
