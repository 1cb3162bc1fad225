"""`python -m services.records` starts one replica of the records service."""

from mesh.service import serve

serve("records", "services.records.app:app")
