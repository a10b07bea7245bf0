"""Conformance suite for /queue (SPEC §6), run against every queue backend.

The `queue` fixture starts `mikcar --queue` once per test on each backend in BACKENDS. Every test
must pass on every backend: the HTTP contract does not depend on where messages live. Queue and
topic names are unique per test, so backends that share a server (Redis, RabbitMQ) need no
clean-up between tests.
"""
import concurrent.futures
import json
import os
import socket
import struct
import threading
import time
import uuid

import pytest
import requests

from conftest import TOKEN, assert_envelope

REDIS_URL = os.environ.get("MIKCAR_TEST_REDIS_URL")
REDISS_URL = os.environ.get("MIKCAR_TEST_REDISS_URL")
AMQP_URL = os.environ.get("MIKCAR_TEST_AMQP_URL")
AMQPS_URL = os.environ.get("MIKCAR_TEST_AMQPS_URL")  # TLS; its CA is in MIKCAR_TEST_CA_FILE


def backend_url(name, tmp_path):
    if name == "memory":
        return "memory://"
    if name == "file":
        return f"file://{tmp_path}/queue"
    base = {"redis": REDIS_URL, "rediss": REDISS_URL, "amqp": AMQP_URL, "amqps": AMQPS_URL}[name]
    if name in ("redis", "rediss"):
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}prefix=mikcar-test-{uuid.uuid4().hex}:"
    return base


BACKENDS = [
    "memory",
    "file",
    pytest.param("redis", marks=pytest.mark.skipif(not REDIS_URL, reason="MIKCAR_TEST_REDIS_URL unset")),
    pytest.param("rediss",
                 marks=pytest.mark.skipif(not REDISS_URL, reason="MIKCAR_TEST_REDISS_URL unset")),
    pytest.param("amqp", marks=pytest.mark.skipif(not AMQP_URL, reason="MIKCAR_TEST_AMQP_URL unset")),
    pytest.param("amqps", marks=pytest.mark.skipif(not AMQPS_URL, reason="MIKCAR_TEST_AMQPS_URL unset")),
]


def backend_env(name, tmp_path):
    env = {"QUEUE_URL": backend_url(name, tmp_path)}
    if name in ("rediss", "amqps"):
        env["SSL_CERT_FILE"] = os.environ["MIKCAR_TEST_CA_FILE"]  # certificates are verified
    return env


@pytest.fixture(params=BACKENDS)
def queue(request, start_mikcar, tmp_path):
    m = start_mikcar(["--queue"], env=backend_env(request.param, tmp_path), data_dir=str(tmp_path))
    m.backend = request.param
    return m


def name(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def push(m, q, payload, **params):
    data = payload if isinstance(payload, bytes) else json.dumps(payload)  # bytes: sent raw
    r = m.post(f"/queue/push/{q}", data=data, params=params, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queue"] == q and body["status"] == "pushed"
    return body["message_id"]


def pop(m, q, **params):
    r = m.get(f"/queue/pop/{q}", params=params, timeout=40)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queue"] == q
    return body["message"]


def length(m, q):
    r = m.get(f"/queue/len/{q}", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queue"] == q
    return body


def subscribe(m, topic, **params):
    r = m.get(f"/queue/subscribe/{topic}", params=params, timeout=40)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["topic"] == topic and body["count"] == len(body["messages"])
    return body["messages"]


def eventually(check, timeout=10.0, interval=0.05):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


# --- push / pop ------------------------------------------------------------------------------

def test_fifo_order_and_id_stability(queue):
    q = name()
    ids = [push(queue, q, {"n": i}) for i in range(20)]
    assert len(set(ids)) == 20
    got = [pop(queue, q) for _ in range(20)]
    assert [m["payload"] for m in got] == [{"n": i} for i in range(20)]
    assert [m["id"] for m in got] == ids
    assert pop(queue, q) is None


def test_message_shape(queue):
    q = name()
    before = time.time()
    mid = push(queue, q, {"hello": "world", "nested": [1, 2.5, None, True]})
    m = pop(queue, q)
    assert m["id"] == mid
    assert m["payload"] == {"hello": "world", "nested": [1, 2.5, None, True]}
    assert m["attempts"] == 1
    received = time.mktime(time.strptime(m["received_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert m["received_at"].endswith("Z")
    assert before - 2 <= received <= time.time() + 2


def test_pop_without_lease_removes(queue):
    q = name()
    push(queue, q, 1)
    assert pop(queue, q)["payload"] == 1
    assert pop(queue, q) is None
    assert length(queue, q)["length"] == 0


def test_non_json_payload_is_wrapped(queue):
    q = name()
    push(queue, q, b"plain text, not JSON")
    assert pop(queue, q)["payload"] == {"data": "plain text, not JSON"}
    push(queue, q, b"")
    assert pop(queue, q)["payload"] == {"data": ""}
    push(queue, q, b"\xff\xfe bytes")
    payload = pop(queue, q)["payload"]
    assert set(payload) == {"data"} and payload["data"].endswith(" bytes")


def test_json_nested_too_deeply_is_refused_not_wrapped(queue):
    """32 levels of arrays are a payload like any other; 33 are more than the JSON parser takes.
    That body is refused with 400, as the batch route refuses it, instead of being delivered as
    {"data": "[[[..."}, a string the producer never sent. Publish follows the same rule."""
    q, t = name(), name("t")
    deep32 = "[" * 32 + "]" * 32
    push(queue, q, deep32.encode())
    assert pop(queue, q)["payload"] == json.loads(deep32)
    deep33 = ("[" * 33 + "]" * 33).encode()
    for path in (f"/queue/push/{q}", f"/queue/publish/{t}"):
        r = queue.post(path, data=deep33, timeout=10)
        assert_envelope(r, 400, "BAD_REQUEST")
        assert "nested too deeply" in r.json()["error"]
    assert length(queue, q)["length"] == 0
    assert pop(queue, q, timeout="0") is None


def test_json_scalars_and_unicode(queue):
    q = name()
    for value in ["a string", 42, -1.5, True, None, [], {}, {"ünï": "cødé ✓"}]:
        push(queue, q, value)
    got = [pop(queue, q)["payload"] for _ in range(8)]
    assert got == ["a string", 42, -1.5, True, None, [], {}, {"ünï": "cødé ✓"}]


def test_big_payload(queue):
    q = name()
    big = {"blob": "x" * (1 << 20), "tail": list(range(1000))}
    push(queue, q, big)
    assert pop(queue, q)["payload"] == big


def test_timeout_zero_returns_at_once(queue):
    q = name()
    t = time.time()
    assert pop(queue, q, timeout=0) is None
    assert pop(queue, q) is None  # the default is 0 too
    assert time.time() - t < 1.0


def test_long_poll_returns_when_a_message_arrives(queue):
    q = name()
    result = {}

    def waiter():
        t = time.time()
        result["message"] = pop(queue, q, timeout=10)
        result["elapsed"] = time.time() - t

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    mid = push(queue, q, {"late": True})
    th.join(15)
    assert result["message"]["id"] == mid
    assert 0.4 <= result["elapsed"] < 2.0, result


@pytest.mark.parametrize("leave", ["reset", "close"])
@pytest.mark.parametrize("lease", [False, True])
def test_a_long_poll_whose_client_left_takes_nothing(queue, leave, lease):
    """A pop waiting for a message whose client resets or closes its connection first: the next
    message goes to the next pop. The dead poll used to take it, and it was removed (or leased,
    with its attempts raised) for a client that could never receive it."""
    q = name()
    params = "timeout=20" + ("&visibility=30" if lease else "")
    c = socket.create_connection(("127.0.0.1", queue.port))
    c.sendall(f"GET /queue/pop/{q}?{params} HTTP/1.1\r\nHost: mikcar\r\n"
              f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    time.sleep(0.3)  # the pop is waiting
    if leave == "reset":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.3)
    push(queue, q, {"n": 1})
    got = pop(queue, q, timeout="5")
    assert got is not None, "the message went to the client that had left"
    assert got["payload"] == {"n": 1} and got["attempts"] == 1


def test_a_subscribe_whose_client_left_takes_nothing(queue):
    """The same for a topic: the group's next subscribe gets what was published after its
    waiting consumer reset the connection."""
    t = name("t")
    assert subscribe(queue, t, group="g", timeout="0") == []  # the group exists from here on
    c = socket.create_connection(("127.0.0.1", queue.port))
    c.sendall(f"GET /queue/subscribe/{t}?group=g&timeout=20 HTTP/1.1\r\nHost: mikcar\r\n"
              f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    time.sleep(0.3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.3)
    r = queue.post(f"/queue/publish/{t}", json={"n": 2}, timeout=10)
    assert r.status_code == 200, r.text
    got = subscribe(queue, t, group="g", timeout="5")
    assert [m["payload"] for m in got] == [{"n": 2}]


def test_long_poll_times_out_empty(queue):
    q = name()
    t = time.time()
    assert pop(queue, q, timeout=1) is None
    assert 0.9 <= time.time() - t < 3.0


def test_competing_consumers_each_message_once(queue):
    q = name()
    n = 200
    r = queue.post(f"/queue/push/{q}/batch", json={"messages": list(range(n))}, timeout=20)
    assert r.status_code == 200, r.text
    seen = []
    lock = threading.Lock()

    def consumer():
        s = requests.Session()
        s.headers.update(queue.session.headers)
        while True:
            body = s.get(queue.url(f"/queue/pop/{q}"), params={"timeout": 0.5}, timeout=20).json()
            if body["message"] is None:
                return
            with lock:
                seen.append(body["message"]["payload"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(consumer) for _ in range(4)]:
            f.result()
    assert sorted(seen) == list(range(n))


def test_concurrent_pushes_all_arrive(queue):
    q = name()

    def producer(k):
        s = requests.Session()
        s.headers.update(queue.session.headers)
        return [s.post(queue.url(f"/queue/push/{q}"), data=json.dumps([k, i]), timeout=20).json()["message_id"]
                for i in range(25)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = [i for f in [pool.submit(producer, k) for k in range(8)] for i in f.result()]
    assert len(set(ids)) == 200
    assert length(queue, q)["length"] == 200
    got = [pop(queue, q) for _ in range(200)]
    assert {m["id"] for m in got} == set(ids)
    # Each producer's own messages keep their order.
    for k in range(8):
        mine = [m["payload"][1] for m in got if m["payload"][0] == k]
        assert mine == list(range(25))


# --- batch -----------------------------------------------------------------------------------

def test_batch_push(queue):
    q = name()
    r = queue.post(f"/queue/push/{q}/batch", json={"messages": [{"a": 1}, "two", [3]]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["queue"] == q and body["status"] == "pushed"
    assert len(set(body["message_ids"])) == 3
    got = [pop(queue, q) for _ in range(3)]
    assert [m["payload"] for m in got] == [{"a": 1}, "two", [3]]
    assert [m["id"] for m in got] == body["message_ids"]


def test_batch_bad_bodies_change_nothing(queue):
    q = name()
    cases = [
        (b"{not json", 400, "BAD_REQUEST"),
        (json.dumps([1, 2]), 422, "UNPROCESSABLE"),
        (json.dumps({"msgs": [1]}), 422, "UNPROCESSABLE"),
        (json.dumps({"messages": "x"}), 422, "UNPROCESSABLE"),
    ]
    for data, status, code in cases:
        r = queue.post(f"/queue/push/{q}/batch", data=data, headers={"Content-Type": "application/json"})
        assert_envelope(r, status, code)
    r = queue.post(f"/queue/push/{q}/batch", data="{}", headers={"Content-Type": "text/plain"})
    assert_envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    r = queue.post(f"/queue/push/{q}/batch", json={"messages": list(range(10001))})
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert length(queue, q) == {"length": 0, "queue": q, "leased": 0, "delayed": 0}


# --- leases ----------------------------------------------------------------------------------

def test_lease_ack(queue):
    q = name()
    mid = push(queue, q, "job")
    m = pop(queue, q, visibility=30)
    assert m["id"] == mid
    assert pop(queue, q) is None  # hidden while leased
    assert length(queue, q)["leased"] == 1
    r = queue.post(f"/queue/ack/{q}/{mid}")
    assert r.status_code == 200, r.text
    assert r.json()["message_id"] == mid and r.json()["status"] == "acknowledged"
    assert length(queue, q) == {"length": 0, "queue": q, "leased": 0, "delayed": 0}
    assert_envelope(queue.post(f"/queue/ack/{q}/{mid}"), 404, "NOT_FOUND")  # twice


def test_lease_expiry_redelivers_same_id(queue):
    q = name()
    mid = push(queue, q, {"x": 1})
    first = pop(queue, q, visibility=1)
    assert first["id"] == mid and first["attempts"] == 1
    t = time.time()
    again = pop(queue, q, timeout=5, visibility=30)
    assert again is not None and again["id"] == mid and again["payload"] == {"x": 1}
    assert again["attempts"] == 2
    assert 0.7 <= time.time() - t < 3.5
    # The first lease is gone: acking with it now still works only because the second lease
    # holds the same id; ack once, then the id is unknown.
    assert queue.post(f"/queue/ack/{q}/{mid}").status_code == 200
    assert_envelope(queue.post(f"/queue/ack/{q}/{mid}"), 404, "NOT_FOUND")


def test_ack_after_lease_expiry_is_404(queue):
    q = name()
    mid = push(queue, q, 1)
    pop(queue, q, visibility=1)
    time.sleep(1.5)
    assert_envelope(queue.post(f"/queue/ack/{q}/{mid}"), 404, "NOT_FOUND")
    assert pop(queue, q, timeout=3)["id"] == mid  # it came back


def test_ack_unknown_and_unleased(queue):
    q = name()
    assert_envelope(queue.post(f"/queue/ack/{q}/no-such-id"), 404, "NOT_FOUND")
    mid = push(queue, q, 1)
    assert_envelope(queue.post(f"/queue/ack/{q}/{mid}"), 404, "NOT_FOUND")  # not leased
    assert_envelope(queue.post(f"/queue/nack/{q}/{mid}"), 404, "NOT_FOUND")
    other = name()
    pop(queue, q, visibility=30)
    assert_envelope(queue.post(f"/queue/ack/{other}/{mid}"), 404, "NOT_FOUND")  # other queue
    assert queue.post(f"/queue/ack/{q}/{mid}").status_code == 200


def test_nack_redelivers_now(queue):
    q = name()
    a = push(queue, q, "a")
    m = pop(queue, q, visibility=30)
    r = queue.post(f"/queue/nack/{q}/{a}")
    assert r.status_code == 200, r.text
    assert r.json()["message_id"] == a
    again = pop(queue, q, visibility=30)
    assert again["id"] == a and again["attempts"] == 2 and m["attempts"] == 1
    assert_envelope(queue.post(f"/queue/nack/{q}/{a}-x"), 404, "NOT_FOUND")


def test_nack_with_delay(queue):
    q = name()
    a = push(queue, q, "a")
    pop(queue, q, visibility=30)
    assert queue.post(f"/queue/nack/{q}/{a}", params={"delay": 1.5}).status_code == 200
    assert pop(queue, q) is None
    assert length(queue, q)["delayed"] == 1
    t = time.time()
    again = pop(queue, q, timeout=5)
    assert again["id"] == a
    assert 1.0 <= time.time() - t < 3.5


def test_dead_letter_after_max_attempts(queue):
    q = name()
    mid = push(queue, q, {"poison": True})
    for attempt in range(1, 6):
        m = pop(queue, q, visibility=30, timeout=5)
        assert m["id"] == mid and m["attempts"] == attempt
        assert queue.post(f"/queue/nack/{q}/{mid}").status_code == 200
    assert pop(queue, q, timeout=0.5) is None
    assert length(queue, q)["length"] == 0
    dead = pop(queue, f"{q}.dlq", timeout=5)
    assert dead is not None and dead["id"] == mid and dead["payload"] == {"poison": True}


def test_dead_letter_queue_of_a_longest_name(queue):
    q = "L" * 200
    mid = push(queue, q, 1)
    for _ in range(5):
        pop(queue, q, visibility=30, timeout=5)
        assert queue.post(f"/queue/nack/{q}/{mid}").status_code == 200
    assert pop(queue, q + ".dlq", timeout=5)["id"] == mid
    assert_envelope(queue.post(f"/queue/push/{'L' * 201}.dlq", data="1"), 400, "BAD_REQUEST")


def test_dead_letter_after_expired_leases(queue):
    q = name()
    mid = push(queue, q, "expires")
    for attempt in range(1, 6):
        m = pop(queue, q, visibility=0.3, timeout=5)
        assert m is not None and m["id"] == mid and m["attempts"] == attempt
    dead = pop(queue, f"{q}.dlq", timeout=5)
    assert dead is not None and dead["id"] == mid
    assert pop(queue, q) is None


# --- delays, dedup ---------------------------------------------------------------------------

def test_delayed_delivery(queue):
    q = name()
    now_id = push(queue, q, "now")
    later = push(queue, q, "later", delay=1.5)
    assert pop(queue, q)["id"] == now_id
    assert pop(queue, q) is None
    ln = length(queue, q)
    assert ln["delayed"] == 1 and ln["length"] == 0
    t = time.time()
    m = pop(queue, q, timeout=5)
    assert m["id"] == later
    assert 1.0 <= time.time() - t < 3.5


def test_dedup_id(queue):
    q = name()
    a = push(queue, q, "first", dedup_id="order-42")
    b = push(queue, q, "second", dedup_id="order-42")
    c = push(queue, q, "third", dedup_id="order-43")
    assert a == b and c != a
    assert length(queue, q)["length"] == 2
    assert pop(queue, q)["payload"] == "first"
    assert pop(queue, q)["payload"] == "third"
    other = name()
    assert push(queue, other, "elsewhere", dedup_id="order-42") != a  # per queue


# --- len -------------------------------------------------------------------------------------

def test_len_counts_ready_leased_delayed(queue):
    q = name()
    assert length(queue, q) == {"length": 0, "queue": q, "leased": 0, "delayed": 0}
    for i in range(5):
        push(queue, q, i)
    push(queue, q, "d", delay=60)
    pop(queue, q, visibility=30)
    pop(queue, q)
    assert length(queue, q) == {"length": 3, "queue": q, "leased": 1, "delayed": 1}


# --- topics ----------------------------------------------------------------------------------

def test_fan_out_to_every_group(queue):
    t = name("t")
    assert subscribe(queue, t, group="a") == []
    assert subscribe(queue, t, group="b") == []
    r = queue.post(f"/queue/publish/{t}", json={"event": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "published" and body["topic"] == t
    for g in ("a", "b"):
        got = subscribe(queue, t, group=g, timeout=5)
        assert [m["payload"] for m in got] == [{"event": 1}]
        assert got[0]["id"] == body["message_id"]
        assert subscribe(queue, t, group=g) == []


def test_group_sees_only_messages_after_its_first_subscribe(queue):
    t = name("t")
    subscribe(queue, t, group="early")
    queue.post(f"/queue/publish/{t}", json="before")
    subscribe(queue, t, group="late")
    queue.post(f"/queue/publish/{t}", json="after")
    assert [m["payload"] for m in subscribe(queue, t, group="early", timeout=5)] == ["before", "after"]
    assert [m["payload"] for m in subscribe(queue, t, group="late", timeout=5)] == ["after"]


def test_consumers_of_one_group_share_messages(queue):
    t = name("t")
    subscribe(queue, t)  # default group
    for i in range(30):
        queue.post(f"/queue/publish/{t}", json=i)
    got = []
    while True:
        batch = subscribe(queue, t, max_messages=7, timeout=1)
        if not batch:
            break
        assert len(batch) <= 7
        got += [m["payload"] for m in batch]
    assert got == list(range(30))


def test_subscribe_returns_early_and_gathers(queue):
    t = name("t")
    subscribe(queue, t, group="g")
    result = {}

    def waiter():
        start = time.time()
        result["messages"] = subscribe(queue, t, group="g", timeout=10, max_messages=100)
        result["elapsed"] = time.time() - start

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    queue.post(f"/queue/publish/{t}", json="x")
    th.join(15)
    assert [m["payload"] for m in result["messages"]] == ["x"]
    assert result["elapsed"] < 2.0


def test_subscribe_with_lease_and_ack(queue):
    t = name("t")
    subscribe(queue, t, group="workers")
    mid = queue.post(f"/queue/publish/{t}", json={"job": 1}).json()["message_id"]
    got = subscribe(queue, t, group="workers", visibility=1, timeout=5)
    assert [m["id"] for m in got] == [mid]
    assert subscribe(queue, t, group="workers") == []  # leased
    again = subscribe(queue, t, group="workers", visibility=30, timeout=5)  # lease expired
    assert [m["id"] for m in again] == [mid] and again[0]["attempts"] == 2
    r = queue.post(f"/queue/ack/{t}/{mid}", params={"group": "workers"})
    assert r.status_code == 200, r.text
    assert_envelope(queue.post(f"/queue/ack/{t}/{mid}", params={"group": "workers"}), 404, "NOT_FOUND")
    time.sleep(1.2)
    assert subscribe(queue, t, group="workers") == []


def test_publish_without_subscribers(queue):
    t = name("t")
    r = queue.post(f"/queue/publish/{t}", data="nobody listens")
    assert r.status_code == 200 and r.json()["message_id"]
    assert subscribe(queue, t) == []


def test_topic_and_queue_names_are_separate(queue):
    n = name("x")
    subscribe(queue, n)
    push(queue, n, "to the queue")
    assert subscribe(queue, n) == []
    queue.post(f"/queue/publish/{n}", json="to the topic")
    assert pop(queue, n)["payload"] == "to the queue"
    assert [m["payload"] for m in subscribe(queue, n, timeout=5)] == ["to the topic"]


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/queue/push/bad%20name", "/queue/push/" + "x" * 201, "/queue/push/a%2Fb", "/queue/push/%C3%A9",
])
def test_bad_queue_names(queue, path):
    assert_envelope(queue.post(path, data="1"), 400, "BAD_REQUEST")


@pytest.mark.parametrize("method,path,params", [
    ("GET", "/queue/pop/q1", {"timeout": "abc"}),
    ("GET", "/queue/pop/q1", {"timeout": "-1"}),
    ("GET", "/queue/pop/q1", {"visibility": "0"}),
    ("GET", "/queue/pop/q1", {"visibility": "x"}),
    ("POST", "/queue/push/q1", {"delay": "soon"}),
    ("POST", "/queue/push/q1", {"dedup_id": ""}),
    ("POST", "/queue/nack/q1/abc", {"delay": "-5"}),
    ("GET", "/queue/subscribe/t1", {"max_messages": "0"}),
    ("GET", "/queue/subscribe/t1", {"max_messages": "1001"}),
    ("GET", "/queue/subscribe/t1", {"max_messages": "ten"}),
    ("GET", "/queue/subscribe/t1", {"group": "bad group"}),
    ("POST", "/queue/ack/q1/abc", {"group": ""}),
])
def test_bad_parameters(queue, method, path, params):
    r = queue.session.request(method, queue.url(path), params=params, data="1", timeout=10)
    assert_envelope(r, 400, "BAD_REQUEST")
    assert length(queue, "q1") == {"length": 0, "queue": "q1", "leased": 0, "delayed": 0}


def test_unauthenticated_and_wrong_method(queue):
    r = requests.post(queue.url("/queue/push/q1"), data="1", timeout=10)
    assert_envelope(r, 401, "UNAUTHORIZED")
    r = queue.get("/queue/push/q1")
    body = assert_envelope(r, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["Allow"], body
    assert_envelope(queue.get("/queue/nothing/q1"), 404, "NOT_FOUND")
    assert length(queue, "q1")["length"] == 0


def test_payload_over_body_limit(start_mikcar, tmp_path):
    m = start_mikcar(["--queue", "--max-body", "1KiB"], env={"QUEUE_URL": "memory://"},
                     data_dir=str(tmp_path))
    assert_envelope(m.post("/queue/push/q1", data="x" * 2048), 413, "PAYLOAD_TOO_LARGE")
    assert length(m, "q1")["length"] == 0


def test_ready_reports_backend(queue):
    r = queue.get("/health/ready")
    assert r.status_code == 200, r.text
    assert r.json()["services"]["queue"]["status"] == "up"


# --- deadlines and shutdown ------------------------------------------------------------------

def test_request_deadline_shorter_than_pop_timeout_loses_nothing(start_mikcar, tmp_path, request):
    m = start_mikcar(["--queue", "--timeout", "1s"],
                     env={"QUEUE_URL": f"file://{tmp_path}/queue"}, data_dir=str(tmp_path))
    q = name()
    t = time.time()
    r = m.get(f"/queue/pop/{q}", params={"timeout": 10}, timeout=10)
    assert r.status_code == 200 and r.json()["message"] is None  # answered before the deadline
    assert time.time() - t < 1.0
    pushed, got = [], []
    stop = threading.Event()

    def poller():
        s = requests.Session()
        s.headers.update(m.session.headers)
        while True:
            r = s.get(m.url(f"/queue/pop/{q}"), params={"timeout": 5}, timeout=10)
            assert r.status_code == 200, r.text
            msg = r.json()["message"]
            if msg is None:
                if stop.is_set():
                    return
                continue
            got.append(msg["id"])

    threads = [threading.Thread(target=poller) for _ in range(4)]
    for th in threads:
        th.start()
    for i in range(100):
        pushed.append(push(m, q, i))
        if i % 10 == 0:
            time.sleep(0.3)  # let the polls run into their deadline-capped timeouts
    stop.set()
    for th in threads:
        th.join(20)
    assert sorted(got) == sorted(pushed)


def test_shutdown_answers_long_polls_early(start_mikcar, tmp_path):
    m = start_mikcar(["--queue"], env={"QUEUE_URL": "memory://"}, data_dir=str(tmp_path))
    result = {}

    def waiter():
        t = time.time()
        result["response"] = m.get("/queue/pop/q1", params={"timeout": 25}, timeout=30)
        result["elapsed"] = time.time() - t

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    t = time.time()
    assert m.stop() == 0
    th.join(5)
    assert result["response"].status_code == 200
    assert result["response"].json()["message"] is None
    assert time.time() - t < 3.0 and result["elapsed"] < 4.0


# --- backend URL options (embedded backends) -------------------------------------------------

@pytest.mark.parametrize("kind", BACKENDS)
def test_max_attempts_and_dedup_window_options(start_mikcar, tmp_path, kind):
    env = backend_env(kind, tmp_path)
    env["QUEUE_URL"] += ("&" if "?" in env["QUEUE_URL"] else "?") + "max_attempts=2&dedup_window=300ms"
    m = start_mikcar(["--queue"], env=env, data_dir=str(tmp_path))
    q = name()
    mid = push(m, q, "x")
    for _ in range(2):
        pop(m, q, visibility=30, timeout=5)
        assert m.post(f"/queue/nack/{q}/{mid}").status_code == 200
    assert pop(m, q) is None
    assert pop(m, f"{q}.dlq", timeout=5)["id"] == mid
    a = push(m, q, 1, dedup_id="d")
    assert push(m, q, 2, dedup_id="d") == a
    time.sleep(0.5)
    assert push(m, q, 3, dedup_id="d") != a  # forgotten after the window


@pytest.mark.parametrize("url,expected", [
    ("memory://?max_attempts=0", "max_attempts"),
    ("memory://?max_attempts=many", "max_attempts"),
    ("memory://?dedup_window=forever", "dedup_window"),
    ("file://relative/dir", "file:///absolute/dir"),
    ("nosuch://x", "memory://"),
    ("redis://127.0.0.1:1/x", "numeric db"),
    ("redis://127.0.0.1:1/?max_attempts=0", "max_attempts"),
    ("rediss://127.0.0.1:1/?dedup_window=forever", "dedup_window"),
    ("redis://127.0.0.1:1", "redis 127.0.0.1:1: cannot connect"),
    ("amqp://127.0.0.1:1/?max_attempts=-1", "max_attempts"),
    ("amqp://u:secretpw@127.0.0.1:1/", "amqp 127.0.0.1:1: cannot connect"),
])
def test_bad_queue_url_exits_2(tmp_path, url, expected):
    import subprocess
    from conftest import BIN
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.update({"QUEUE_URL": url, "MIKCAR_DATA_DIR": str(tmp_path)})
    r = subprocess.run([BIN, "--queue", "--port", "0"], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r.stderr
    assert "QUEUE_URL" in r.stderr and expected in r.stderr, r.stderr
    assert "secretpw" not in r.stderr


# --- metrics ---------------------------------------------------------------------------------

def test_metrics_report_the_depth_of_used_queues_and_backend_calls(queue):
    from conftest import metrics
    q, other = name(), name()
    for i in range(3):
        push(queue, q, {"n": i})
    push(queue, q, {"later": True}, delay="60s")
    assert pop(queue, q, visibility="30s", timeout=0)["payload"] == {"n": 0}
    publish = queue.post(f"/queue/publish/{other}", json={"x": 1})  # a topic: not measured
    assert publish.status_code == 200, publish.text
    assert pop(queue, name("typo"), timeout=0) is None  # a pop alone measures nothing

    def depths():
        found = {}
        for (sample, labels), value in metrics(queue).items():
            labels = dict(labels)
            if sample == "mikcar_queue_messages":
                found[(labels["queue"], labels["state"])] = value
        return found

    want = {(q, "ready"): 2, (q, "leased"): 1, (q, "delayed"): 1}
    assert eventually(lambda: depths() == want), depths()
    calls = {dict(labels)["operation"]: value for (sample, labels), value in metrics(queue).items()
             if sample == "mikcar_backend_calls_total"}
    assert calls == {"push": 4, "pop": 2, "publish": 1}, calls


def test_metrics_measure_at_most_256_queues(start_mikcar, tmp_path):
    from conftest import metrics
    m = start_mikcar(["--queue"], env={"QUEUE_URL": "memory://"}, data_dir=str(tmp_path))
    names = [name("cap") for _ in range(300)]
    for q in names:
        push(m, q, {"n": 1})
    measured = {dict(labels)["queue"] for (sample, labels), _ in metrics(m).items()
                if sample == "mikcar_queue_messages"}
    assert len(measured) == 256 and measured <= set(names)
