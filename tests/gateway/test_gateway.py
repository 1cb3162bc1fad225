"""The gateway over real HTTP, with real processes behind it: signatures, replay, buckets,
roles, limits, fail-closed behaviour, and the first-run flow through the SDK."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from cli import keys
from cli.sdk import ApiError, MedihavenClient
from contracts import attendance, audit, auth, chat, fhir
from contracts import keyvault as kv
from contracts.base import ALL_ROLES, Role
from gateway.access import ACCESS
from mesh.errors import Conflict
from mesh.httpsig import sign_request
from services.keyvault.sealedbox import seal_share
from tests.gateway.support import Mesh, mesh


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with mesh("gw", tmp_path_factory.mktemp("gwlogs")) as m:
        yield m


def reason(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return str(response.json()["error"]["details"]["reason"])


def test_first_run_flow(world: Mesh) -> None:
    admin = world.admin()
    me = admin.client.get("/api/v1/me")
    assert me["role"] == "administrator"
    # Every screen shows times in the clinic's zone, whoever looks.
    assert (me["clinic_time_zone"], me["clinic_region"]) == ("Europe/Berlin", "DE")
    doctor, clerk = world.staff("physician"), world.staff("receptionist")
    assert doctor.client.get("/api/v1/me")["role"] == "physician"
    assert clerk.client.get("/api/v1/me")["role"] == "receptionist"
    names = {a["account_id"] for a in admin.client.get("/api/v1/staff")["accounts"]}
    assert {doctor.account_id, clerk.account_id} <= names
    with pytest.raises(Conflict, match="administrator already exists"):
        world.bus(
            lambda rpc: rpc.call(auth.BOOTSTRAP, auth.BootstrapRequest(), idempotency_key="x")
        )


def test_every_401_reason_is_named(world: Mesh) -> None:
    staff = world.staff("physician")
    url = f"{world.url}/api/v1/me"
    http = httpx.Client(timeout=10)

    def signed(**kwargs: Any) -> dict[str, str]:
        return sign_request(staff.client.private_key, staff.account_id, "GET", url, b"", **kwargs)

    assert reason(http.get(url)) == "missing"
    headers = signed()
    headers["Signature-Input"] = "sig1=garbage((("
    assert reason(http.get(url, headers=headers)) == "malformed"
    unknown = sign_request(staff.client.private_key, str(uuid.uuid4()), "GET", url, b"")
    assert reason(http.get(url, headers=unknown)) == "unknown_key"
    other = sign_request(keys.generate(), staff.account_id, "GET", url, b"")
    assert reason(http.get(url, headers=other)) == "bad_signature"
    assert reason(http.get(url, headers=signed(created=int(time.time()) - 120))) == "stale"
    once = signed()
    assert http.get(url, headers=once).status_code == 200
    assert reason(http.get(url, headers=once)) == "replayed"
    # a body changed after signing
    post_url = f"{world.url}/api/v1/chat/direct"
    body = json.dumps({"other_account_id": staff.account_id}).encode()
    tampered = sign_request(staff.client.private_key, staff.account_id, "POST", post_url, body)
    tampered["Content-Type"] = "application/json"
    changed = body.replace(b"}", b" }")
    assert reason(http.post(post_url, content=changed, headers=tampered)) == "digest_mismatch"
    # disabled account: refused at once (the cache is dropped on the change event)
    world.admin().client.put(f"/api/v1/staff/{staff.account_id}/status", {"status": "disabled"})
    # refused at once (by auth itself), and by the gateway as soon as the change event
    # has dropped the cached key
    deadline = time.time() + 5
    while True:
        response = staff.client.request("GET", "/api/v1/me")
        assert response.status_code == 401, response.text
        details = response.json()["error"]["details"]
        if (details and details.get("reason") == "disabled") or time.time() > deadline:
            break
        time.sleep(0.1)
    assert reason(response) == "disabled"
    world.admin().client.put(f"/api/v1/staff/{staff.account_id}/status", {"status": "active"})


def test_tokens_refused_with_one_message(world: Mesh) -> None:
    admin = world.admin().client
    used = admin.post("/api/v1/tokens", {"role": "physician"})["token"]
    world.register(used)
    revoked = admin.post("/api/v1/tokens", {"role": "physician"})
    admin.post(f"/api/v1/tokens/{revoked['token_id']}/revoke")
    messages = set()
    for token in (used, revoked["token"], "not-a-token"):
        with pytest.raises(ApiError) as err:
            world.register(token)
        assert err.value.status == 401
        messages.add(err.value.message)
    assert len(messages) == 1
    states = {t["token_id"]: t["state"] for t in admin.get("/api/v1/tokens")["tokens"]}
    assert states[revoked["token_id"]] == "revoked"


def test_request_limits(world: Mesh) -> None:
    staff = world.staff("physician")
    url = f"{world.url}/api/v1/chat/direct"
    http = httpx.Client(timeout=10)
    big = b'{"other_account_id": "' + b"x" * 300_000 + b'"}'
    headers = sign_request(staff.client.private_key, staff.account_id, "POST", url, big)
    headers["Content-Type"] = "application/json"
    assert http.post(url, content=big, headers=headers).status_code == 413
    plain = b"hello"
    headers = sign_request(staff.client.private_key, staff.account_id, "POST", url, plain)
    headers["Content-Type"] = "text/plain"
    assert http.post(url, content=plain, headers=headers).status_code == 415
    broken = b'{"other_account_id": '
    headers = sign_request(staff.client.private_key, staff.account_id, "POST", url, broken)
    headers["Content-Type"] = "application/json"
    response = http.post(url, content=broken, headers=headers)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation"
    wrong_type = staff.client.request("POST", "/api/v1/chat/direct", {"other_account_id": 5})
    assert wrong_type.status_code == 422
    assert "other_account_id" in json.dumps(wrong_type.json()["error"]["details"])
    for response in (wrong_type,):
        assert "Traceback" not in response.text


def test_role_matrix(world: Mesh) -> None:
    """Every signed route for every role: allowed (never 403, never 5xx) or 403, as the table
    says. (The same roles are enforced by each service: see tests/auth and tests/chat.)"""
    admin = world.admin()
    members = {
        "administrator": admin,
        "physician": world.staff("physician"),
        "receptionist": world.staff("receptionist"),
    }
    nobody = str(uuid.uuid4())
    routes: list[tuple[str, str, Any, str]] = [
        ("GET", "/api/v1/me", None, auth.ME.name),
        ("GET", "/api/v1/directory", None, auth.DIRECTORY.name),
        ("PUT", "/api/v1/me/key", {"new_public_key": "x" * 44}, auth.ROTATE_KEY.name),
        ("GET", "/api/v1/staff", None, auth.LIST_STAFF.name),
        (
            "PUT",
            f"/api/v1/staff/{nobody}/status",
            {"status": "active"},
            auth.SET_ACCOUNT_STATUS.name,
        ),
        ("GET", "/api/v1/tokens", None, auth.LIST_TOKENS.name),
        ("POST", "/api/v1/tokens", {"role": "receptionist"}, auth.ISSUE_TOKEN.name),
        ("POST", f"/api/v1/tokens/{nobody}/revoke", {}, auth.REVOKE_TOKEN.name),
        ("POST", "/api/v1/vault/rotate", {"add": 1, "retire_existing": False}, kv.ROTATE.name),
        # the key lifecycle (tests/keyvault/test_key_lifecycle.py does each for real): here
        # requests that change nothing (unknown keys, ceremonies and replicas)
        ("GET", "/api/v1/vault/rewrap", None, kv.REWRAP_STATUS.name),
        ("POST", "/api/v1/vault/rewrap/cancel", {}, kv.REWRAP_CANCEL.name),
        ("POST", "/api/v1/vault/min-decryption", {}, kv.SET_MIN_DECRYPTION.name),
        ("POST", "/api/v1/vault/keys/999999/destroy", {}, kv.DESTROY_KEY.name),
        ("GET", "/api/v1/vault/ceremony", None, kv.CEREMONY_STATUS.name),
        (
            "POST",
            "/api/v1/vault/ceremony/share",
            {"ceremony_id": nobody, "instance": "nobody", "sealed_share": "x"},
            kv.CEREMONY_SHARE.name,
        ),
        (
            "POST",
            "/api/v1/vault/ceremony/commit",
            {"ceremony_id": nobody, "instance": "nobody", "shares_digest": "0" * 64},
            kv.CEREMONY_COMMIT.name,
        ),
        ("POST", "/api/v1/vault/ceremony/cancel", {"ceremony_id": nobody}, kv.CEREMONY_CANCEL.name),
        ("POST", "/api/v1/chat/direct", {"other_account_id": nobody}, chat.OPEN_DIRECT.name),
        (
            "POST",
            "/api/v1/chat/groups",
            {"name": "g", "member_ids": [nobody]},
            chat.CREATE_GROUP.name,
        ),
        ("GET", "/api/v1/chat/conversations", None, chat.LIST_CONVERSATIONS.name),
        ("POST", f"/api/v1/chat/conversations/{nobody}/messages", {"text": "x"}, chat.SEND.name),
        ("GET", "/api/v1/chat/messages", None, chat.HISTORY.name),
        (
            "POST",
            f"/api/v1/chat/conversations/{nobody}/read",
            {"up_to_message_id": 1},
            chat.MARK_READ.name,
        ),
        ("GET", f"/api/v1/chat/conversations/{nobody}/receipts", None, chat.RECEIPTS.name),
        ("GET", "/api/v1/me/attendance", None, attendance.MY_DUTY.name),
        ("GET", "/api/v1/attendance", None, attendance.LIST_DUTY.name),
        ("POST", f"/api/v1/staff/{nobody}/check-in", {"reason": "x" * 3}, attendance.CHECK_IN.name),
        ("POST", f"/api/v1/staff/{nobody}/check-out", {"reason": "xyz"}, attendance.CHECK_OUT.name),
    ]
    routes += [
        ("GET", "/api/v1/audit/events", None, audit.QUERY.name),
        ("GET", f"/api/v1/audit/patients/{nobody}", None, audit.PATIENT_HISTORY.name),
        ("GET", "/api/v1/audit/export", None, audit.EXPORT.name),
        ("GET", "/api/v1/audit/verify", None, audit.VERIFY.name),
        ("POST", "/api/v1/audit/verify/full", {}, audit.VERIFY_FULL.name),
        ("GET", "/api/v1/audit/verify/full", None, audit.FULL_VERIFICATION.name),
    ]
    # scheduling and records routes have their own matrices (tests/scheduling,
    # tests/records over the bus, tests/gateway/test_clinic_day.py over HTTP)
    others = {name for name in ACCESS if name.split(".")[0] in ("scheduling", "records")}
    # FHIR interactions: their own matrix (tests/gateway/test_fhir.py)
    others |= {m.name for m in fhir.ROUTED}
    # registration is signed by the new key, not by a member (test_first_run_flow,
    # test_tokens_refused_with_one_message); the live channel's signed handshake stands
    # for chat.catch_up (open for every role, below; tests/gateway/test_live.py)
    unsigned = {auth.REGISTER.name, chat.CATCH_UP.name}
    # what would start a rewrap or a ceremony is tried here by the other roles only
    # (an administrator's run and ceremonies: tests/keyvault/test_key_lifecycle.py)
    refused_only: list[tuple[str, str, Any, str]] = [
        ("POST", "/api/v1/vault/rewrap", {}, kv.REWRAP_START.name),
        (
            "POST",
            "/api/v1/vault/ceremony",
            {"kind": "rekey", "recipient_public_key": "A" * 43 + "="},
            kv.CEREMONY_START.name,
        ),
    ]
    assert {name for *_, name in [*routes, *refused_only]} | {
        kv.SEAL.name
    } | unsigned | others == set(ACCESS)
    assert ACCESS[chat.CATCH_UP.name] == ALL_ROLES
    for role, member in members.items():
        for method, path, body, name in routes:
            response = member.client.request(method, path, body)
            if role in ACCESS[name]:
                assert response.status_code != 403 and response.status_code < 500, (
                    role,
                    path,
                    response.text,
                )
            else:
                assert response.status_code == 403, (role, path, response.text)
        for method, path, body, name in refused_only:
            assert ACCESS[name] == {Role.administrator}, name
            if role not in ACCESS[name]:
                response = member.client.request(method, path, body)
                assert response.status_code == 403, (role, path, response.text)
        if role not in ACCESS[kv.SEAL.name]:  # (sealing for real is tested below)
            assert member.client.request("POST", "/api/v1/vault/seal", {}).status_code == 403
        # the live channel with a catch-up (chat.catch_up), signed as a GET
        url = world.url.replace("http://", "ws://") + "/api/v1/ws?last_id=0"
        handshake = sign_request(member.client.private_key, member.account_id, "GET", url, b"")
        with ws_connect(url, additional_headers=handshake, open_timeout=10) as ws:
            frame = json.loads(ws.recv(timeout=10))
            while frame["type"] != "ready":  # the catch-up comes first
                frame = json.loads(ws.recv(timeout=10))
            assert frame["account_id"] == member.account_id, (role, frame)


def test_access_table_agrees_with_contracts() -> None:
    from contracts.common import collect

    methods = {m.name: m for m in collect()[0]}
    for name, roles in ACCESS.items():
        contract_roles = methods[name].roles
        assert (contract_roles or ALL_ROLES) == roles, name


def test_token_bucket_refuses_a_burst_and_refills(world: Mesh) -> None:
    small = world.extra_gateway(
        MEDIHAVEN_RATE_GENERAL_CAPACITY="5", MEDIHAVEN_RATE_GENERAL_PER_S="2"
    )
    noisy, quiet = world.staff("receptionist"), world.staff("receptionist")
    noisy_client = MedihavenClient(small.url, noisy.account_id, noisy.client.private_key)
    quiet_client = MedihavenClient(small.url, quiet.account_id, quiet.client.private_key)
    statuses = [noisy_client.request("GET", "/api/v1/me") for _ in range(12)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    first = refused[0]
    assert int(first.headers["Retry-After"]) >= 1
    assert first.headers["RateLimit-Policy"].startswith('"general";q=5')
    assert "RateLimit" in first.headers
    assert quiet_client.request("GET", "/api/v1/me").status_code == 200  # others unaffected
    time.sleep(int(first.headers["Retry-After"]) + 0.5)
    assert noisy_client.request("GET", "/api/v1/me").status_code == 200  # refilled


def _admitted(gateway_url: str) -> float:
    metrics = httpx.get(f"{gateway_url}/metrics", timeout=5).text
    (line,) = [m for m in metrics.splitlines() if m.startswith("medihaven_gateway_admitted ")]
    return float(line.split()[1])


@contextmanager
def _chat_call_held(world: Mesh, client: MedihavenClient, gateway_url: str) -> Iterator[None]:
    """The chat service stopped (SIGSTOP) with one of `client`'s calls in it, holding an
    admission turn of the gateway at `gateway_url` until the block ends; then the chat
    service goes on and the held call ends (answered, or 504 past its deadline)."""
    chat_service = world.procs["services.chat"].popen
    slow: list[int] = []
    chat_service.send_signal(signal.SIGSTOP)
    try:
        holder = threading.Thread(
            target=lambda: slow.append(
                client.request("GET", "/api/v1/chat/conversations").status_code
            )
        )
        holder.start()
        deadline = time.monotonic() + 3
        while _admitted(gateway_url) < 1:  # the chat call has its turn
            assert time.monotonic() < deadline, "the chat call never took its turn"
        yield
    finally:
        chat_service.send_signal(signal.SIGCONT)
    holder.join(10)
    assert slow and slow[0] in (200, 504), slow


def test_calls_past_the_admission_limit_wait_at_the_edge_then_get_a_clean_503(
    world: Mesh,
) -> None:
    """A service that stops answering holds the one turn of a small gateway: the next
    call waits at the edge, not on the bus, and gets a 503 `busy` with Retry-After; once
    the service answers again the turn comes back. Another gateway is not affected."""
    small = world.extra_gateway(
        MEDIHAVEN_ADMISSION_LIMIT="1",
        MEDIHAVEN_ADMISSION_WAIT_S="0.5",
        MEDIHAVEN_RPC_DEADLINE_S="4",
    )
    staff = world.staff("receptionist")
    client = MedihavenClient(small.url, staff.account_id, staff.client.private_key)
    assert client.request("GET", "/api/v1/me").status_code == 200
    with _chat_call_held(world, client, small.url):
        started = time.monotonic()
        refused = client.request("GET", "/api/v1/me")
        waited = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "busy"
        assert "very busy" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"] == "1"
        assert 0.4 < waited < 3.0, waited
        assert staff.client.request("GET", "/api/v1/me").status_code == 200  # another gateway
    assert client.request("GET", "/api/v1/me").status_code == 200
    assert _admitted(small.url) == 0


def test_one_account_cannot_hold_every_turn_of_a_gateway(world: Mesh) -> None:
    """A gateway whose accounts may each have one call in the mesh: while one account's
    call is held up (its service stopped), that account's next call gets a 429 at once,
    in words, and a colleague on the same gateway is served."""
    small = world.extra_gateway(
        MEDIHAVEN_ADMISSION_LIMIT="8",
        MEDIHAVEN_ADMISSION_PER_ACCOUNT="1",
        MEDIHAVEN_RPC_DEADLINE_S="4",
    )
    busy, colleague = world.staff("receptionist"), world.staff("physician")
    client = MedihavenClient(small.url, busy.account_id, busy.client.private_key)
    other = MedihavenClient(small.url, colleague.account_id, colleague.client.private_key)
    assert client.request("GET", "/api/v1/me").status_code == 200
    with _chat_call_held(world, client, small.url):  # the account's one turn
        started = time.monotonic()
        refused = client.request("GET", "/api/v1/me")
        assert time.monotonic() - started < 2  # at once, not after the admission wait
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "you already have 1 request in progress" in refused.json()["error"]["message"]
        assert refused.headers["Retry-After"] == "1"
        assert other.request("GET", "/api/v1/me").status_code == 200  # the colleague
    assert client.request("GET", "/api/v1/me").status_code == 200  # its turn came back


def test_unauthenticated_routes_have_a_per_address_bucket(world: Mesh) -> None:
    small = world.extra_gateway(MEDIHAVEN_RATE_ANONYMOUS_CAPACITY="3")
    codes = [
        httpx.post(
            f"{small.url}/api/v1/vault/unseal",
            json={"instance": "nobody", "sealed_share": "x"},
            timeout=10,
        ).status_code
        for _ in range(5)
    ]
    assert 429 in codes and codes[0] != 429


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_down_means_503_never_unchecked(world: Mesh, tmp_path: Path) -> None:
    port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        gateway = world.extra_gateway(MEDIHAVEN_REDIS_URL=f"redis://127.0.0.1:{port}/0")
        staff = world.staff("physician")
        client = MedihavenClient(gateway.url, staff.account_id, staff.client.private_key)
        assert client.request("GET", "/api/v1/me").status_code == 200
    finally:
        redis.kill()
        redis.wait()
    for _ in range(5):
        response = client.request("GET", "/api/v1/me")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
    # an unauthenticated rate-limited route fails closed too
    response = httpx.post(
        f"{gateway.url}/api/v1/vault/unseal",
        json={"instance": "x", "sealed_share": "y"},
        timeout=10,
    )
    assert response.status_code == 503


def test_vault_status_seal_and_unseal_through_the_gateway(world: Mesh) -> None:
    admin = world.admin()
    replicas = httpx.get(f"{world.url}/api/v1/vault/status", timeout=10).json()["replicas"]
    assert [r["state"] for r in replicas] == ["unsealed"]
    sealed = admin.client.post("/api/v1/vault/seal")["replicas"]
    assert [r["state"] for r in sealed] == ["sealed"]
    # sealed: account checks need the keyvault, so signed routes answer 503 "sealed"
    admin.client.request("GET", "/api/v1/me")
    replica = httpx.get(f"{world.url}/api/v1/vault/status", timeout=10).json()["replicas"][0]
    for share in world.shares[:3]:
        reply = httpx.post(
            f"{world.url}/api/v1/vault/unseal",
            json={
                "instance": replica["instance"],
                "sealed_share": seal_share(replica["transport_public_key"], share),
            },
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
    assert reply.json()["state"] == "unsealed"
    me = admin.client.get("/api/v1/me")
    assert me["role"] == "administrator"
    # Every screen shows times in the clinic's zone, whoever looks.
    assert (me["clinic_time_zone"], me["clinic_region"]) == ("Europe/Berlin", "DE")


def test_chat_through_the_gateway(world: Mesh) -> None:
    ann, bob = world.staff("physician"), world.staff("receptionist")
    conversation = ann.client.post("/api/v1/chat/direct", {"other_account_id": bob.account_id})
    cid = conversation["conversation_id"]
    sent = ann.client.post(f"/api/v1/chat/conversations/{cid}/messages", {"text": "room 3 ready?"})
    page = bob.client.get("/api/v1/chat/messages", conversation_id=cid)
    assert [m["text"] for m in page["messages"]] == ["room 3 ready?"]
    receipt = bob.client.post(
        f"/api/v1/chat/conversations/{cid}/read", {"up_to_message_id": sent["message_id"]}
    )
    assert receipt["read_up_to"] == sent["message_id"]
    too_long = ann.client.request(
        "POST", f"/api/v1/chat/conversations/{cid}/messages", {"text": "x" * 5000}
    )
    assert too_long.status_code == 422
    eve = world.staff("receptionist")
    assert (
        eve.client.request(
            "GET", "/api/v1/chat/messages", None, {"conversation_id": cid}
        ).status_code
        == 403
    )
    assert (
        eve.client.request(
            "POST", f"/api/v1/chat/conversations/{uuid.uuid4()}/messages", {"text": "hi"}
        ).status_code
        == 404
    )


def test_cli_register_me_chat_and_vault_status(world: Mesh, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from tests.processes import process_env

    runner = CliRunner()
    env = process_env(
        world.settings,
        MEDIHAVEN_HOME=str(tmp_path / "home"),
        MEDIHAVEN_PASSPHRASE="correct horse battery",
    )
    token = world.admin().client.post("/api/v1/tokens", {"role": "physician"})["token"]
    result = runner.invoke(
        app,
        [
            "register",
            "--token",
            token,
            "--username",
            "dr-cli",
            "--display-name",
            "Dr Cli",
            "--url",
            world.url,
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "home" / "key.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    result = runner.invoke(app, ["me"], env=env)
    assert result.exit_code == 0 and '"role": "physician"' in result.output
    other = world.staff("receptionist")
    result = runner.invoke(
        app, ["chat", "send", "hello from the CLI", "--to", other.account_id], env=env
    )
    assert result.exit_code == 0, result.output
    page = other.client.get("/api/v1/chat/messages")
    assert "hello from the CLI" in [m["text"] for m in page["messages"]]
    result = runner.invoke(app, ["chat", "read"], env=env)
    assert "hello from the CLI" in result.output
    result = runner.invoke(app, ["token", "list"], env=env)  # not an administrator
    assert result.exit_code == 1 and "403" in result.output
    result = runner.invoke(app, ["me"], env={**env, "MEDIHAVEN_PASSPHRASE": "wrong passphrase"})
    assert result.exit_code == 1 and "passphrase is wrong" in result.output
    result = runner.invoke(app, ["vault", "status"], env=env)
    assert result.exit_code == 0 and "unsealed" in result.output, result.output
    assert "root key generation 0" in result.output, result.output


def test_audit_trail_through_the_gateway(world: Mesh) -> None:
    """Security-relevant actions land in the audit chain, which administrators can query
    and verify."""
    admin = world.admin().client
    issued = admin.post("/api/v1/tokens", {"role": "physician"})
    deadline = time.time() + 10
    while time.time() < deadline:
        page = admin.get("/api/v1/audit/events", type="auth.token_issued", limit=500)
        if any(e["event"]["entity_id"] == issued["token_id"] for e in page["entries"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the token issue was not audited")
    refused = admin.get("/api/v1/audit/events", outcome="refused", limit=500)
    assert any(e["event"]["type"] == "gateway.signature_refused" for e in refused["entries"])
    # the type filter takes the event types there are (contracts.audit.AuditType), and a
    # made-up one is a 422 naming the field, not an empty page that looks like "nothing"
    made_up = admin.request("GET", "/api/v1/audit/events", None, {"type": "patient.stolen"})
    assert made_up.status_code == 422, made_up.text
    assert "type" in json.dumps(made_up.json()["error"]["details"])
    assert "Traceback" not in made_up.text
    assert admin.get("/api/v1/audit/verify")["ok"] is True
    ndjson = admin.request("GET", "/api/v1/audit/export", None, {"limit": 5}).text
    assert all(json.loads(line)["resourceType"] == "AuditEvent" for line in ndjson.splitlines())
