"""bench.capacity: the arithmetic of the capacity model (docs/capacity.md), on figures
chosen so each rule shows: load over the target utilisation plus one spare replica, never
fewer than the minimum, engine nodes sized for one node lost, storage from bytes per
request."""

from __future__ import annotations

import pytest

from bench.capacity import Hospital, Measured, plan, render

HOSPITAL = Hospital(
    concurrent_staff=600,
    requests_per_staff_per_min=10,  # 100 requests/s on average
    peak_factor=2,  # 200 at peak
    busy_hours_per_day=10,
    target_utilisation=0.5,
    min_replicas=2,
)


def test_a_service_gets_its_load_over_the_target_and_one_spare() -> None:
    # 200/s x 4 ms = 0.8 cores; / 0.5 = 1.6 -> 2, +1 spare = 3
    result = plan(Measured({"records": 4.0}), HOSPITAL)
    records = next(s for s in result.services if s.name == "records")
    assert result.average_rps == pytest.approx(100)
    assert result.peak_rps == pytest.approx(200)
    assert records.cores_at_peak == pytest.approx(0.8)
    assert records.replicas == 3


def test_a_light_or_unmeasured_service_still_gets_the_minimum() -> None:
    result = plan(Measured({"auth": 0.01}), HOSPITAL)
    assert {s.name: s.replicas for s in result.services}["auth"] == 2
    assert {s.name: s.replicas for s in result.services}["chat"] == 2  # not measured: 0 ms


def test_engine_nodes_are_sized_for_the_busiest_node_with_one_of_three_lost() -> None:
    cpu = {"galera-1": 6.0, "galera-2": 1.0, "galera-3": 1.0, "galera-1 idle": 99.0}
    galera = next(e for e in plan(Measured(cpu), HOSPITAL).engines if "Galera" in e.name)
    # 200/s x 6 ms = 1.2 cores, x 3/2 (two nodes left) = 1.8; / 0.5 = 3.6 -> 4 cores
    assert galera.cpu_ms == 6.0  # the busiest node, not its idle figure
    assert galera.cores_at_peak == pytest.approx(1.8)
    assert (galera.replicas, galera.cores_each) == (3, 4)


def test_memory_is_what_was_used_doubled_in_256_mb_steps_with_a_floor() -> None:
    measured = Measured({}, rss_mb={"gateway": 300.0, "rabbitmq-1": 100.0})
    result = plan(measured, HOSPITAL)
    assert next(s for s in result.services if s.name == "gateway").memory_mb_each == 768
    rabbit = next(e for e in result.engines if e.name.startswith("RabbitMQ"))
    assert rabbit.memory_mb_each == 2048  # the floor


def test_storage_a_year_from_bytes_per_request() -> None:
    result = plan(Measured({}, db_bytes_per_request=1000), HOSPITAL)
    # 100/s x 3600 x 10 h x 365 days x 1000 B = 1,314 GB
    assert result.storage_gb_per_year == pytest.approx(1314)


def test_the_rendered_plan_names_every_service_and_engine() -> None:
    text = render(plan(Measured({"gateway": 2.0}), HOSPITAL), HOSPITAL)
    for name in ("gateway", "records", "keyvault", "audit", "RabbitMQ", "Galera", "Redis"):
        assert name in text
    assert "200 at peak" in text
