"""`python -m services.chat` starts one replica of the chat service."""

from mesh.service import serve

serve("chat", "services.chat.app:app")
