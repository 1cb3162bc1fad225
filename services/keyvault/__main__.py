"""`python -m services.keyvault` starts one replica of the keyvault service."""

from mesh.service import serve

serve("keyvault", "services.keyvault.app:app")
