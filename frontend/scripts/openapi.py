"""Print the gateway's OpenAPI document, the source of the web app's generated API types.

Read-only and light: the FastAPI app is built (`gateway.app.create_app`), never started,
so neither the mesh nor RabbitMQ, MariaDB or Redis is needed. Keys are sorted, so the
same contracts always give the same bytes (the generated file is checked in CI).

    make api-types   # or: .venv/bin/python frontend/scripts/openapi.py > /tmp/openapi.json
"""

from __future__ import annotations

import json
import sys

from gateway.app import create_app


def main() -> None:
    document = create_app().openapi()
    json.dump(document, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
