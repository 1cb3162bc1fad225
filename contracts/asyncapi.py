"""`python -m contracts.asyncapi` prints an AsyncAPI 3.0 document of the whole wire.

It walks every module of `contracts/` for `RpcMethod` and `EventType` objects, so the
document cannot drift from the code: what is not in `contracts/` is not on the wire.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from contracts.base import EVENTS_EXCHANGE
from contracts.common import collect
from contracts.errors import ErrorReply


def _schema(model: type[Any]) -> dict[str, Any]:
    return dict(model.model_json_schema(ref_template="#/components/schemas/{model}"))


def document() -> dict[str, Any]:
    methods, events = collect()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {"ErrorReply": {"payload": _schema(ErrorReply)}}
    for m in methods:
        key = m.name.replace(".", "_")
        messages[f"{key}_request"] = {
            "name": m.name,
            "headers": {"type": "object", "properties": {"x-method": {"const": m.name}}},
            "payload": _schema(m.request),
        }
        messages[f"{key}_reply"] = {"payload": _schema(m.response)}
        channels.setdefault(
            m.queue, {"address": m.queue, "messages": {}, "description": f"{m.service} requests"}
        )
        channels[m.queue]["messages"][f"{key}_request"] = {
            "$ref": f"#/components/messages/{key}_request"
        }
        operations[key] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{m.queue}"},
            "messages": [{"$ref": f"#/channels/{m.queue}/messages/{key}_request"}],
            "reply": {
                "address": {"location": "$message.header#/reply_to"},
                "messages": [
                    {"$ref": f"#/components/messages/{key}_reply"},
                    {"$ref": "#/components/messages/ErrorReply"},
                ],
            },
            "x-medihaven": {
                "write": m.write,
                "roles": sorted(m.roles) if m.roles is not None else None,
                "callers": sorted(m.callers) if m.callers is not None else None,
                "route": f"{m.route.method} {m.route.full_path}" if m.route else None,
                "for_user": m.for_user,
            },
        }
    for e in events:
        key = e.routing_key.replace(".", "_")
        messages[key] = {"name": e.routing_key, "payload": _schema(e.model)}
        channels[e.routing_key] = {
            "address": e.routing_key,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {"name": EVENTS_EXCHANGE}}},
        }
        operations[f"publish_{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{e.routing_key}"},
            "x-medihaven": {
                "publishers": sorted(e.publishers) if e.publishers is not None else None
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Medihaven mesh", "version": "1"},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def main() -> None:
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
