"""`medihaven vault rewrap | destroy | rekey | ceremony-share …`: what each command sends to
the gateway and prints (the gateway's side, for real: test_key_lifecycle, test_rewrap,
test_rewrap_clinic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from nacl.public import PrivateKey
from typer.testing import CliRunner

from cli import lifecycle, profile
from cli.main import app
from cli.sdk import ApiError
from contracts import keyvault as kv
from services.keyvault.sealedbox import open_share, public_key_b64, seal_share

Answer = Callable[[str, str, Any], Any]


class FakeGateway:
    """Answers by (verb, path); a list answers one item per call, the last one repeated."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, Any]] = []

    def _send(self, verb: str, path: str, body: Any) -> Any:
        self.sent.append((verb, path, body))
        answer = self.answers[(verb, path)]
        if callable(answer):
            return answer(verb, path, body)
        if isinstance(answer, list):
            return answer.pop(0) if len(answer) > 1 else answer[0]
        return answer

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params)

    def post(self, path: str, body: Any = None) -> Any:
        return self._send("POST", path, body)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "POLL_S", 0.0)


def run(monkeypatch: pytest.MonkeyPatch, fake: FakeGateway, *args: str, stdin: str = "") -> Any:
    monkeypatch.setattr(profile, "client", lambda: fake)
    return CliRunner().invoke(app, ["vault", *args], input=stdin)


def run_status(state: str | None, done: int, total: int, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": None if state is None else "r1",
        "state": state,
        "reindex": False,
        "rows_total": total,
        "rows_done": done,
        "rate_rows_per_s": 50.0,
        "eta_seconds": (total - done) / 50 if state == "running" else None,
        "services_pending": ["records"] if state == "running" else [],
        "tables": [],
        "failures": [],
        "retired_in_use": {},
        **extra,
    }


def test_the_progress_line_shows_bar_rate_and_eta() -> None:
    line = lifecycle.progress_line(run_status("running", 250, 1000))
    assert line.startswith("[" + "#" * 8 + "-" * 22 + "]")
    assert "25%" in line and "250/1000 rows" in line and "50 rows/s" in line
    assert "ETA 0:00:15" in line and "waiting for records" in line
    done = lifecycle.progress_line(run_status("complete", 990, 1000))
    assert "#" * lifecycle.BAR_WIDTH in done and "100%" in done and "complete" in done
    assert "0%" in lifecycle.progress_line(run_status(None, 0, 0))


def test_rewrap_starts_a_run_and_follows_it_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "service": "chat",
        "table": "messages",
        "pass_number": 2,
        "rows_rewrapped": 40,
        "fields_rewrapped": 40,
        "macs_rewrapped": 0,
        "tokens_rewritten": 0,
        "rows_changed": 3,
        "rows_failed": 0,
        "done": True,
    }
    fake = FakeGateway(
        {
            ("GET", "/api/v1/vault/rewrap"): [
                run_status("complete", 10, 10, run_id="old"),
                run_status("running", 20, 40),
                run_status("complete", 40, 40, tables=[table]),
            ],
            ("POST", "/api/v1/vault/rewrap"): run_status("running", 0, 40),
        }
    )
    result = run(monkeypatch, fake, "rewrap", "--batch-rows", "50", "--rows-per-second", "10")
    assert result.exit_code == 0, result.output
    verbs = [(verb, path) for verb, path, _ in fake.sent]
    assert verbs.count(("POST", "/api/v1/vault/rewrap")) == 1
    start = next(body for verb, _, body in fake.sent if verb == "POST")
    assert start["batch_rows"] == 50 and start["rows_per_second"] == 10
    assert "rewrap r1 started" in result.output and "ETA" in result.output
    assert "40/40 rows, complete" in result.output
    assert "chat       messages" in result.output and "3 changed by users" in result.output


def test_rewrap_follows_a_running_run_instead_of_starting_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failure = {"service": "records", "table": "patients", "pk": "p9", "reason": "destroyed key"}
    fake = FakeGateway(
        {
            ("GET", "/api/v1/vault/rewrap"): [
                run_status("running", 5, 10),
                run_status("complete", 10, 10, failures=[failure], retired_in_use={"3": 1}),
            ],
        }
    )
    result = run(monkeypatch, fake, "rewrap")
    assert result.exit_code == 1  # a row could not be moved: reported, and the exit says so
    assert all(verb == "GET" for verb, _, _ in fake.sent)
    assert "not moved: records patients p9: destroyed key" in result.output
    assert "retired keys still in use" in result.output
    never = run(
        monkeypatch,
        FakeGateway({("GET", "/api/v1/vault/rewrap"): run_status(None, 0, 0)}),
        "rewrap",
        "--status",
    )
    assert never.exit_code == 0 and "no rewrap has run yet" in never.output


def test_rewrap_status_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGateway({("GET", "/api/v1/vault/rewrap"): run_status("running", 5, 10)})
    result = run(monkeypatch, fake, "rewrap", "--status")
    assert result.exit_code == 0 and len(fake.sent) == 1
    assert "5/10 rows" in result.output


def test_destroy_shows_each_services_scan_and_refusals_readably(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destroyed = {"key_id": 7, "purpose": "data", "state": "destroyed", "checked": {"chat": 0}}
    fake = FakeGateway({("POST", "/api/v1/vault/keys/7/destroy"): destroyed})
    result = run(monkeypatch, fake, "destroy", "7")
    assert result.exit_code == 0 and "key 7 (data): destroyed" in result.output
    assert "chat: 0 fields and tags" in result.output

    def refuse(*_: Any) -> Any:
        raise ApiError(409, "conflict", "rows still use key 7", {"in_use": {"chat": 1}})

    result = run(
        monkeypatch, FakeGateway({("POST", "/api/v1/vault/keys/7/destroy"): refuse}), "destroy", "7"
    )
    assert result.exit_code == 1 and "rows still use key 7" in result.output


def test_min_decryption_sends_only_what_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = {"min_decryption": {"data": 5}, "min_field_version": 1, "refused_keys": [1, 2]}
    fake = FakeGateway({("POST", "/api/v1/vault/min-decryption"): reply})
    result = run(monkeypatch, fake, "min-decryption", "--purpose", "data", "--min-key-id", "5")
    assert result.exit_code == 0, result.output
    assert fake.sent[0][2] == {"force": False, "purpose": "data", "min_key_id": 5}


class Coordinator:
    """A keyvault replica's side of a ceremony, as the gateway relays it."""

    def __init__(self, required: int = 2) -> None:
        self.key = PrivateKey.generate()
        self.required = required
        self.received: list[str] = []
        self.recipient: str | None = None
        self.new_shares = ["mhs1-new-a", "mhs1-new-b", "mhs1-new-c"]
        self.committed: dict[str, Any] | None = None

    def status(self, state: str | None = None) -> dict[str, Any]:
        prepared = len(self.received) >= self.required
        sealed = (
            [seal_share(self.recipient, s) for s in self.new_shares]
            if prepared and self.recipient
            else []
        )
        return {
            "ceremony_id": "c1",
            "kind": "rekey",
            "state": state or ("prepared" if prepared else "collecting"),
            "threshold": 2,
            "shares": 3,
            "required": self.required,
            "progress": len(self.received),
            "coordinator": "keyvault-a",
            "transport_public_key": public_key_b64(self.key.public_key),
            "started_by": "admin-1",
            "sealed_shares": sealed,
            "message": None,
        }

    def start(self, _: str, __: str, body: Any) -> Any:
        self.recipient = body["recipient_public_key"]
        return self.status()

    def get(self, *_: Any) -> Any:
        if len(self.received) < self.required:  # the other holders submit meanwhile
            self.received.append(f"mhs1-current-{len(self.received)}")
        return self.status()

    def share(self, _: str, __: str, body: Any) -> Any:
        assert body["instance"] == "keyvault-a"
        self.received.append(open_share(self.key, body["sealed_share"]))
        return self.status()

    def commit(self, _: str, __: str, body: Any) -> Any:
        self.committed = body
        return {**self.status("committed"), "message": "shares rekeyed"}

    def gateway(self) -> FakeGateway:
        return FakeGateway(
            {
                ("POST", "/api/v1/vault/ceremony"): self.start,
                ("GET", "/api/v1/vault/ceremony"): self.get,
                ("POST", "/api/v1/vault/ceremony/share"): self.share,
                ("POST", "/api/v1/vault/ceremony/commit"): self.commit,
                ("POST", "/api/v1/vault/ceremony/cancel"): lambda *_: self.status("cancelled"),
            }
        )


def test_rekey_prints_the_new_shares_once_and_commits_their_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator = Coordinator()
    fake = coordinator.gateway()
    result = run(monkeypatch, fake, "rekey", "--threshold", "2", "--shares", "3", stdin="y\n")
    assert result.exit_code == 0, result.output
    start = fake.sent[0][2]
    assert start["kind"] == "rekey" and (start["threshold"], start["shares"]) == (2, 3)
    for number, share in enumerate(coordinator.new_shares, start=1):
        assert f"share {number}: {share}" in result.output
    assert coordinator.committed == {
        "ceremony_id": "c1",
        "instance": "keyvault-a",
        "shares_digest": kv.ceremony_digest("c1", coordinator.new_shares),
    }
    assert "shares rekeyed" in result.output


def test_a_rekey_not_confirmed_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator = Coordinator()
    fake = coordinator.gateway()
    result = run(monkeypatch, fake, "rotate-root", stdin="n\n")
    assert result.exit_code == 1 and coordinator.committed is None
    assert ("POST", "/api/v1/vault/ceremony/cancel") in [(v, p) for v, p, _ in fake.sent]
    assert fake.sent[0][2]["kind"] == "rotate_root"


def test_ceremony_share_is_sealed_to_the_coordinator(monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator = Coordinator(required=3)
    fake = FakeGateway(
        {
            ("GET", "/api/v1/vault/ceremony"): lambda *_: coordinator.status(),
            ("POST", "/api/v1/vault/ceremony/share"): coordinator.share,
        }
    )
    result = run(monkeypatch, fake, "ceremony-share", "--share", "-", stdin="mhs1-mine\n")
    assert result.exit_code == 0, result.output
    assert coordinator.received == ["mhs1-mine"]
    sent = fake.sent[1][2]["sealed_share"]
    assert "mhs1-mine" not in sent  # sealed, never in clear on the way
    assert "1 of 3 current shares in (collecting)" in result.output
