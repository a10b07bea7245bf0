"""The networked queue backends (redis://, amqp://) beyond the conformance suite: what only a
shared server can show. kill -9 of mikcar loses no acknowledged push; a lease held by a dead
sidecar comes back; two sidecars on one server share queues; a broker restart fails only what is
in flight (503) and later requests succeed."""
import os
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import Mikcar, drain_queue, kill_9, push_storm_until_kill_9

REDIS_URL = os.environ.get("MIKCAR_TEST_REDIS_URL")
AMQP_URL = os.environ.get("MIKCAR_TEST_AMQP_URL")
AMQPS_URL = os.environ.get("MIKCAR_TEST_AMQPS_URL")
AMQP_MAX_MESSAGE = os.environ.get("MIKCAR_TEST_AMQP_MAX_MESSAGE_SIZE")  # the broker's max_message_size
AMQP_STOP = os.environ.get("MIKCAR_TEST_AMQP_STOP")
AMQP_START = os.environ.get("MIKCAR_TEST_AMQP_START")

BACKENDS = [
    pytest.param("redis", marks=pytest.mark.skipif(not REDIS_URL, reason="MIKCAR_TEST_REDIS_URL unset")),
    pytest.param("amqp", marks=pytest.mark.skipif(not AMQP_URL, reason="MIKCAR_TEST_AMQP_URL unset")),
]


@pytest.fixture(params=BACKENDS)
def url(request):
    if request.param == "redis":
        return f"{REDIS_URL}?prefix=mikcar-net-{uuid.uuid4().hex}:"
    return AMQP_URL


def start(url, tmp_path, sub="a"):
    d = tmp_path / sub
    d.mkdir(exist_ok=True)
    return Mikcar(["--queue"], env={"QUEUE_URL": url}, data_dir=str(d))


def name(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"




def test_acknowledged_pushes_survive_kill_9(url, tmp_path):
    q = name("storm")
    m = start(url, tmp_path)
    acked = push_storm_until_kill_9(m, q, 16, 1.5)
    again = start(url, tmp_path, "b")
    try:
        got = drain_queue(again, q)
        assert len(got) == len(set(got)), "a message was delivered twice"
        lost = set(acked) - set(got)
        assert not lost, f"{len(lost)} acknowledged pushes lost, e.g. {sorted(lost)[:5]}"
        assert len(got) - len(acked) <= 16  # at most the pushes in flight at the kill
    finally:
        again.stop()


def test_lease_of_a_killed_sidecar_comes_back(url, tmp_path):
    q = name("lease")
    m = start(url, tmp_path)
    mid = m.post(f"/queue/push/{q}", json={"job": 1}).json()["message_id"]
    leased = m.get(f"/queue/pop/{q}", params={"visibility": 2}).json()["message"]
    assert leased["id"] == mid and leased["attempts"] == 1
    kill_9(m)
    again = start(url, tmp_path, "b")
    try:
        t = time.time()
        back = again.get(f"/queue/pop/{q}", params={"timeout": 6, "visibility": 30}).json()["message"]
        assert back is not None and back["id"] == mid and back["payload"] == {"job": 1}
        assert back["attempts"] == 2
        assert time.time() - t < 4  # redis: after the 2 s lease; amqp: at once (broker requeue)
        assert again.post(f"/queue/ack/{q}/{mid}").status_code == 200
        assert again.get(f"/queue/pop/{q}", params={"timeout": 2.5}).json()["message"] is None
    finally:
        again.stop()


def test_two_sidecars_share_queues_and_groups(url, tmp_path):
    a, b = start(url, tmp_path, "a"), start(url, tmp_path, "b")
    try:
        q = name()
        # A long-poll on b sees a push through a (no local wake-up: only the poll).
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            r=b.get(f"/queue/pop/{q}", params={"timeout": 10}, timeout=20)))
        waiter.start()
        time.sleep(0.5)
        pushed = time.time()
        mid = a.post(f"/queue/push/{q}", json="x").json()["message_id"]
        waiter.join()
        assert result["r"].json()["message"]["id"] == mid
        assert time.time() - pushed < 1.0
        # Competing consumers across sidecars: each message once.
        ids = a.post(f"/queue/push/{q}/batch", json={"messages": list(range(60))}).json()["message_ids"]
        seen, lock = [], threading.Lock()

        def consume(m):
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {m.token}"
            while True:
                msg = s.get(m.url(f"/queue/pop/{q}"), params={"timeout": 0}, timeout=10).json()["message"]
                if msg is None:
                    return
                with lock:
                    seen.append(msg["id"])

        threads = [threading.Thread(target=consume, args=(m,)) for m in (a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seen) == sorted(ids)
        # A group subscribed through a receives what is published through b.
        t = name("topic")
        assert a.get(f"/queue/subscribe/{t}", params={"group": "g"}).json()["count"] == 0
        pid = b.post(f"/queue/publish/{t}", json={"n": 1}).json()["message_id"]
        got = a.get(f"/queue/subscribe/{t}", params={"group": "g", "timeout": 5}).json()["messages"]
        assert [m["id"] for m in got] == [pid]
    finally:
        a.stop()
        b.stop()


@pytest.mark.skipif(not (AMQP_URL and AMQP_STOP and AMQP_START), reason="no RabbitMQ restart commands")
def test_rabbitmq_restart_fails_in_flight_then_recovers(tmp_path):
    m = start(AMQP_URL, tmp_path)
    q = name("restart")
    try:
        kept = m.post(f"/queue/push/{q}", json="before").json()["message_id"]
        subprocess.run(AMQP_STOP, shell=True, check=True, timeout=60)
        try:
            r = m.post(f"/queue/push/{q}", json="during", timeout=20)
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "UNAVAILABLE"
            assert "amqp 127.0.0.1" in r.json()["error"] and "@" not in r.json()["error"]
            ready = m.get("/health/ready", timeout=10)
            assert ready.status_code == 503, ready.text
            # /metrics still answers, at once: the failed push counts, the depth is left out
            t = time.monotonic()
            text = m.get("/metrics", timeout=10).text
            assert time.monotonic() - t < 2
            assert ('mikcar_backend_errors_total{service="queue",backend="amqp",operation="push",'
                    'reason="unavailable"} 1\n') in text, text
            assert "mikcar_queue_messages{" not in text
        finally:
            subprocess.run(AMQP_START, shell=True, check=True, timeout=60)
        r = m.post(f"/queue/push/{q}", json="after", timeout=20)
        assert r.status_code == 200, r.text
        got = [m.get(f"/queue/pop/{q}").json()["message"] for _ in range(3)]
        assert [g and g["payload"] for g in got] == ["before", "after", None]
        assert got[0]["id"] == kept
        assert m.get("/health/ready", timeout=10).status_code == 200
    finally:
        m.stop()


@pytest.mark.skipif(not (AMQP_URL and AMQP_MAX_MESSAGE), reason="no RabbitMQ with a known max_message_size")
def test_rabbitmq_batch_failing_part_way_stores_nothing(tmp_path):
    d = tmp_path / "batch"
    d.mkdir()
    m = Mikcar(["--queue", "--max-body", "32MiB"], env={"QUEUE_URL": AMQP_URL}, data_dir=str(d))
    q = name("batch")
    try:
        assert m.post(f"/queue/push/{q}", json="before").status_code == 200
        leased = m.get(f"/queue/pop/{q}", params={"visibility": 30}).json()["message"]
        too_big = "x" * (int(AMQP_MAX_MESSAGE) + (1 << 20))  # the broker refuses it
        r = m.post(f"/queue/push/{q}/batch", json={"messages": [1, 2, too_big, 4]}, timeout=30)
        assert r.status_code == 413, r.text
        assert "max size" in r.json()["error"]
        assert m.get(f"/queue/len/{q}").json()["length"] == 0
        assert m.get(f"/queue/pop/{q}").json()["message"] is None, "part of the batch was stored"
        # The connection stayed: the lease taken before is still held and can be acked.
        assert m.post(f"/queue/ack/{q}/{leased['id']}").status_code == 200
        ids = m.post(f"/queue/push/{q}/batch", json={"messages": [1, 2, 4]}).json()["message_ids"]
        got = [m.get(f"/queue/pop/{q}").json()["message"] for _ in range(4)]
        assert [g and g["id"] for g in got] == ids + [None]
    finally:
        m.stop()


@pytest.mark.skipif(not AMQPS_URL, reason="MIKCAR_TEST_AMQPS_URL unset")
def test_amqps_refuses_a_broker_the_ca_does_not_vouch_for(tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    # The system bundle does not hold the test CA that signed the broker's certificate.
    wrong = {"QUEUE_URL": AMQPS_URL, "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}
    with pytest.raises(RuntimeError) as e:
        Mikcar(["--queue"], env=wrong, data_dir=str(d))
    port = AMQPS_URL.rsplit(":", 1)[1].strip("/")
    assert "exited with 2" in str(e.value)
    assert "QUEUE_URL" in str(e.value) and f"amqps localhost:{port}" in str(e.value), str(e.value)
    assert "verif" in str(e.value), str(e.value)  # names the failed certificate check
    assert urllib.parse.urlsplit(AMQPS_URL).password not in str(e.value)
    # The same broker through the right CA works; ?insecure=true skips the check.
    for env in ({"QUEUE_URL": AMQPS_URL, "SSL_CERT_FILE": os.environ["MIKCAR_TEST_CA_FILE"]},
                dict(wrong, QUEUE_URL=AMQPS_URL + "?insecure=true")):
        m = Mikcar(["--queue"], env=env, data_dir=str(d))
        try:
            q = name("tls")
            mid = m.post(f"/queue/push/{q}", json="over tls").json()["message_id"]
            assert m.get(f"/queue/pop/{q}").json()["message"]["id"] == mid
        finally:
            m.stop()


@pytest.mark.skipif(not REDIS_URL, reason="MIKCAR_TEST_REDIS_URL unset")
def test_redis_connection_loss_fails_in_flight_then_recovers(tmp_path):
    url = f"{REDIS_URL}?prefix=mikcar-net-{uuid.uuid4().hex}:"
    m = start(url, tmp_path)
    q = name("kill")
    try:
        assert m.post(f"/queue/push/{q}", json=1).status_code == 200
        port = REDIS_URL.rsplit(":", 1)[1]
        subprocess.run(["redis-cli", "-p", port, "CLIENT", "KILL", "TYPE", "normal"], check=True,
                       capture_output=True)
        # The next request either reconnects at once or fails with 503; one after that succeeds.
        codes = [m.post(f"/queue/push/{q}", json=i).status_code for i in range(2, 4)]
        assert codes[-1] == 200 and all(c in (200, 503) for c in codes), codes
        assert m.get(f"/queue/len/{q}").json()["length"] == 1 + codes.count(200)
    finally:
        m.stop()


@pytest.mark.skipif(not REDIS_URL, reason="MIKCAR_TEST_REDIS_URL unset")
def test_redis_stall_past_the_request_deadline_loses_no_pop(tmp_path):
    url = f"{REDIS_URL}?prefix=mikcar-net-{uuid.uuid4().hex}:"
    d = tmp_path / "stall"
    d.mkdir()
    m = Mikcar(["--queue", "--timeout", "1s"], env={"QUEUE_URL": url}, data_dir=str(d))
    q = name("stall")
    try:
        mid = m.post(f"/queue/push/{q}", json={"n": 1}).json()["message_id"]
        port = REDIS_URL.rsplit(":", 1)[1]
        subprocess.run(["redis-cli", "-p", port, "CLIENT", "PAUSE", "1500", "ALL"], check=True,
                       capture_output=True)
        r = m.get(f"/queue/pop/{q}", timeout=10)  # without a lease; Redis answers after 1.5 s
        assert r.status_code == 408, r.text
        time.sleep(1)
        got = m.get(f"/queue/pop/{q}").json()["message"]
        assert got is not None, "the pop that timed out lost the message"
        assert got["id"] == mid and got["attempts"] == 1
    finally:
        m.stop()


def test_bad_url_options_fail_fast(url, tmp_path):
    bad = url + ("&" if "?" in url else "?") + "max_attempts=0"
    d = tmp_path / "bad"
    d.mkdir()
    with pytest.raises(RuntimeError) as e:
        Mikcar(["--queue"], env={"QUEUE_URL": bad}, data_dir=str(d))
    assert "max_attempts" in str(e.value)
