"""Prometheus metrics shared by every process (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_SERVED = Counter(
    "medihaven_rpc_served_total",
    "RPC requests handled, by service, method and outcome (ok or an error code).",
    ["service", "method", "outcome"],
)
RPC_SECONDS = Histogram(
    "medihaven_rpc_seconds",
    "Time spent handling an RPC request, by service and method.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_PUBLISHED = Counter(
    "medihaven_events_published_total", "Events published, by routing key.", ["routing_key"]
)
EVENTS_RESENT = Counter(
    "medihaven_events_resent_total",
    "Events sent again after their confirm was lost with the connection, by routing key.",
    ["routing_key"],
)
EVENTS_CONSUMED = Counter(
    "medihaven_events_consumed_total",
    "Events consumed, by consumer group and outcome.",
    ["group", "outcome"],
)
DB_RETRIES = Counter(
    "medihaven_db_transaction_retries_total",
    "Transactions run again after a deadlock or Galera certification conflict, by database.",
    ["database"],
)
GATEWAY_ADMITTED = Gauge(
    "medihaven_gateway_admitted",
    "User calls this gateway has in the mesh now (at most MEDIHAVEN_ADMISSION_LIMIT).",
)
GATEWAY_WAITING = Gauge(
    "medihaven_gateway_waiting", "User calls waiting at this gateway for their turn."
)
GATEWAY_REFUSED_ACCOUNT = Counter(
    "medihaven_gateway_refused_account_total",
    "User calls refused with a 429: their account already had "
    "MEDIHAVEN_ADMISSION_PER_ACCOUNT calls in or waiting at this gateway.",
)
GATEWAY_REFUSED_BUSY = Counter(
    "medihaven_gateway_refused_busy_total",
    "User calls refused with a 503 after waiting MEDIHAVEN_ADMISSION_WAIT_S for a turn.",
)
