"""`python -m services.keyvault` starts one replica of the keyvault, hardened first."""

from mesh.service import serve
from services.keyvault.hardening import harden_process

harden_process()
serve("keyvault", "services.keyvault.app:app")
