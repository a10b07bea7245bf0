"""Conformance suite for /kv (SPEC §3), run against every KV backend.

The `kv` fixture starts `mikcar --kv` once per test on memory://, file://<tmp>/kv (LMDB),
redis:// (MIKCAR_TEST_REDIS_URL) and rediss:// (MIKCAR_TEST_REDISS_URL, TLS with a test CA), each
Redis test with a unique ?prefix=. Every test must pass on every
backend: the HTTP contract does not depend on where the bytes live.
"""
import base64
import concurrent.futures
import json
import os
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import assert_envelope

REDIS_URL = os.environ.get("MIKCAR_TEST_REDIS_URL")
REDISS_URL = os.environ.get("MIKCAR_TEST_REDISS_URL")  # TLS; its CA is in MIKCAR_TEST_CA_FILE


@pytest.fixture(params=[
    "memory",
    "file",
    pytest.param("redis", marks=pytest.mark.skipif(
        not REDIS_URL, reason="MIKCAR_TEST_REDIS_URL is not set (scripts/test-backends.sh starts a Redis)")),
    pytest.param("rediss", marks=pytest.mark.skipif(
        not REDISS_URL, reason="MIKCAR_TEST_REDISS_URL is not set (scripts/test-backends.sh starts one)")),
])
def kv(request, start_mikcar, tmp_path):
    if request.param == "memory":
        url = "memory://"
    elif request.param == "file":
        url = f"file://{tmp_path}/kv"
    else:
        base = REDIS_URL if request.param == "redis" else REDISS_URL
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}prefix=mikcar-test-{uuid.uuid4().hex}:"
    env = {"KV_URL": url}
    if request.param == "rediss":
        env["SSL_CERT_FILE"] = os.environ["MIKCAR_TEST_CA_FILE"]  # certificates are verified
    return start_mikcar(["--kv"], env=env, data_dir=str(tmp_path))


# --- helpers ---------------------------------------------------------------------------------

def q(key):
    """Percent-encode a key (or pattern) as one path segment."""
    return urllib.parse.quote(key, safe="")


def exact(kv, method, path, **kw):
    """Send `path` byte for byte (requests would turn %62 into b)."""
    prep = kv.session.prepare_request(requests.Request(method, kv.url("/"), **kw))
    prep.url = kv.base + path
    return kv.session.send(prep, timeout=10)


def kset(kv, key, value=b"v", params=None, headers=None):
    r = kv.post("/kv/set/" + q(key), data=value, params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"key": key, "status": "ok"}
    return r.headers["ETag"]


def kget(kv, key):
    r = kv.get("/kv/get/" + q(key))
    assert r.status_code == 200, r.text
    return r.content


def missing(kv, key):
    return kv.get("/kv/exists/" + q(key)).json() == {"exists": False}


def etag_version(etag):
    assert etag.startswith('"') and etag.endswith('"'), etag
    return int(etag[1:-1])


def version_of(kv, key):
    r = kv.get("/kv/get/" + q(key))
    assert r.status_code == 200, r.text
    return etag_version(r.headers["ETag"])


def ttl(kv, key):
    r = kv.get("/kv/ttl/" + q(key))
    assert r.status_code == 200, r.text
    return r.json()["ttl"]


def set_batch(kv, items, params=None):
    r = kv.post("/kv/set/batch", json=items, params=params)
    assert r.status_code == 200, r.text
    assert r.json() == {"count": len(items), "status": "ok"}


def get_batch(kv, keys):
    r = kv.post("/kv/get/batch", json={"keys": keys})
    assert r.status_code == 200, r.text
    return json.loads(r.text, object_pairs_hook=lambda pairs: pairs)  # keep order and duplicates


def keys_page(kv, pattern, **params):
    r = kv.get("/kv/keys/" + q(pattern), params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"keys", "cursor"}, body
    return body


def all_keys(kv, pattern, limit=None):
    out, cursor = [], None
    for _ in range(100000):
        params = {}
        if limit:
            params["limit"] = limit
        if cursor:
            params["cursor"] = cursor
        page = keys_page(kv, pattern, **params)
        out += page["keys"]
        cursor = page["cursor"]
        if cursor is None:
            return out
    raise AssertionError("keys pagination did not end")


def snapshot(kv):
    """Everything a client can observe about the store, for 'state unchanged' checks."""
    state = {}
    for key in all_keys(kv, "*"):
        r = kv.get("/kv/get/" + q(key))
        assert r.status_code == 200, r.text
        state[key] = (r.content, r.headers["ETag"], r.headers["content-type"], ttl(kv, key) > 0)
    return state


def sorted_bytewise(keys):
    return sorted(keys, key=lambda k: k.encode())


# --- get / set -------------------------------------------------------------------------------

def test_set_get_raw_bytes_and_content_type(kv):
    body = b'{"not": "parsed"}\r\n\x01 raw'
    etag = kset(kv, "doc", body, headers={"Content-Type": "application/json"})
    r = kv.get("/kv/get/doc")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["content-type"] == "application/json"
    assert r.headers["ETag"] == etag

    kset(kv, "plain", b"hello")
    r = kv.get("/kv/get/plain")
    assert r.content == b"hello"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"

    # A later set replaces the content type along with the value.
    kset(kv, "doc", b"<p/>", headers={"Content-Type": "text/html"})
    r = kv.get("/kv/get/doc")
    assert (r.content, r.headers["content-type"]) == (b"<p/>", "text/html")

    kset(kv, "empty", b"")
    assert kget(kv, "empty") == b""


def test_get_missing_is_404(kv):
    assert_envelope(kv.get("/kv/get/nope"), 404, "NOT_FOUND")


def test_versions_increase_on_every_write(kv):
    seen = [etag_version(kset(kv, "k", b"1"))]

    def wrote():
        v = version_of(kv, "k")
        assert v > seen[-1], (v, seen)
        seen.append(v)

    seen.append(etag_version(kset(kv, "k", b"1")))  # same value is still a write
    assert seen[1] > seen[0]
    wrote_set = etag_version(kset(kv, "k", b"2", params={"ttl": 100}))
    assert wrote_set > seen[-1]
    seen.append(wrote_set)
    kset(kv, "k", b"3", params={"keepttl": 1})
    wrote()
    assert kv.post("/kv/increment/k").json() == {"value": 4}
    wrote()
    assert kv.post("/kv/expire/k", json={"seconds": 50}).json() == {"status": "ok"}
    wrote()
    assert kv.post("/kv/persist/k").json() == {"status": "ok"}
    wrote()
    set_batch(kv, {"k": "5"})
    wrote()
    assert kv.delete("/kv/del/k").json() == {"deleted": 1, "status": "ok"}
    seen.append(etag_version(kset(kv, "k", b"again")))  # recreated: still greater
    assert seen[-1] > seen[-2]
    # Versions are per key but never repeat for the key: another key's writes don't matter.
    kset(kv, "other", b"x")
    assert version_of(kv, "k") == seen[-1]


def test_if_none_match_304(kv):
    old = kset(kv, "k", b"v1")
    new = kset(kv, "k", b"v2")
    r = kv.get("/kv/get/k", headers={"If-None-Match": new})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["ETag"] == new
    r = kv.get("/kv/get/k", headers={"If-None-Match": old})
    assert r.status_code == 200
    assert r.content == b"v2" and r.headers["ETag"] == new
    assert_envelope(kv.get("/kv/get/absent", headers={"If-None-Match": new}), 404, "NOT_FOUND")
    # A GET compares weakly, and the header may list several ETags or be * (RFC 9110 §13.1.2).
    for header in ("W/" + new, f'"999999", {new}', f"{old},{new}", "*", f"{new} "):
        assert kv.get("/kv/get/k", headers={"If-None-Match": header}).status_code == 304, header
    for header in ("W/" + old, f'"999999", {old}', "garbage"):
        assert kv.get("/kv/get/k", headers={"If-None-Match": header}).status_code == 200, header


def test_if_match_is_strong_and_names_one_etag(kv):
    etag = kset(kv, "k", b"1")
    before = snapshot(kv)
    body = assert_envelope(kv.post("/kv/set/k", data=b"x", headers={"If-Match": "W/" + etag}), 412,
                           "PRECONDITION_FAILED")
    assert "weak" in body["error"]
    assert_envelope(kv.delete("/kv/del/k", headers={"If-Match": "W/" + etag}), 412,
                    "PRECONDITION_FAILED")
    body = assert_envelope(kv.post("/kv/set/k", data=b"x", headers={"If-Match": f'"999", {etag}'}),
                           400, "BAD_REQUEST")
    assert "one ETag" in body["error"]
    assert snapshot(kv) == before


# --- TTL -------------------------------------------------------------------------------------

def test_ttl_rounds_up_counts_down_and_expired_keys_vanish_everywhere(kv):
    kset(kv, "short", b"7", params={"ttl": 2})
    kset(kv, "short:peer", b"x")
    start = time.monotonic()
    assert ttl(kv, "short") == 2
    time.sleep(max(0, start + 1.1 - time.monotonic()))
    assert ttl(kv, "short") == 1
    assert kget(kv, "short") == b"7"
    time.sleep(max(0, start + 2.2 - time.monotonic()))
    assert_envelope(kv.get("/kv/get/short"), 404, "NOT_FOUND")
    assert ttl(kv, "short") == -2
    assert missing(kv, "short")
    assert keys_page(kv, "short*")["keys"] == ["short:peer"]
    assert get_batch(kv, ["short"]) == [("short", None)]
    assert kv.post("/kv/expire/short", json={"seconds": 10}).json() == {"status": "key_not_found"}
    assert kv.post("/kv/persist/short").json() == {"status": "key_not_found"}
    assert kv.delete("/kv/del/short").json() == {"deleted": 0, "status": "ok"}
    assert_envelope(kv.post("/kv/set/short", data=b"x", params={"xx": 1}), 412, "PRECONDITION_FAILED")
    assert kv.post("/kv/increment/short").json() == {"value": 1}  # starts again from 0
    assert ttl(kv, "short") == -1


def test_ttl_no_ttl_and_missing(kv):
    kset(kv, "k")
    assert ttl(kv, "k") == -1
    assert ttl(kv, "nope") == -2


def test_plain_set_clears_ttl_keepttl_keeps_it(kv):
    kset(kv, "k", b"1", params={"ttl": 100})
    assert ttl(kv, "k") == 100
    kset(kv, "k", b"2", params={"keepttl": 1})
    assert 99 <= ttl(kv, "k") <= 100
    assert kget(kv, "k") == b"2"
    kset(kv, "k", b"3")
    assert ttl(kv, "k") == -1
    # keepttl on a key without TTL leaves it without one; on a missing key it is a plain set.
    kset(kv, "k", b"4", params={"keepttl": 1})
    assert ttl(kv, "k") == -1
    kset(kv, "new", b"n", params={"keepttl": 1})
    assert ttl(kv, "new") == -1


def test_persist_removes_ttl(kv):
    kset(kv, "k", b"v", params={"ttl": 100})
    assert kv.post("/kv/persist/k").json() == {"status": "ok"}
    assert ttl(kv, "k") == -1
    assert kget(kv, "k") == b"v"
    assert kv.post("/kv/persist/k").json() == {"status": "ok"}  # exists, already persistent
    assert kv.post("/kv/persist/nope").json() == {"status": "key_not_found"}
    assert missing(kv, "nope")


@pytest.mark.parametrize("bad", ["0", "-1", "-100", "abc", "", "1.5", "2s", " 3", "99999999999999999999",
                                 "3153600001"])
def test_set_rejects_bad_ttl(kv, bad):
    kset(kv, "k", b"old")
    before = snapshot(kv)
    body = assert_envelope(kv.post("/kv/set/k", data=b"new", params={"ttl": bad}), 400, "BAD_REQUEST")
    assert "ttl: expected a positive number of seconds, at most 100 years" in body["error"]
    assert_envelope(kv.post("/kv/set/fresh", data=b"new", params={"ttl": bad}), 400, "BAD_REQUEST")
    assert_envelope(kv.post("/kv/set/batch", json={"fresh": "x", "k": "y"}, params={"ttl": bad}),
                    400, "BAD_REQUEST")
    assert snapshot(kv) == before


def test_expire_sets_ttl(kv):
    kset(kv, "k", b"v")
    assert kv.post("/kv/expire/k", json={"seconds": 100}).json() == {"status": "ok"}
    assert ttl(kv, "k") == 100
    assert kget(kv, "k") == b"v"
    assert kv.post("/kv/expire/k", json={"seconds": 5}).json() == {"status": "ok"}
    assert ttl(kv, "k") == 5


@pytest.mark.parametrize("seconds", [0, -1, -3600, -9223372036854776, -9223372036854775808])
def test_expire_zero_or_negative_deletes(kv, seconds):
    kset(kv, "k", b"v", params={"ttl": 100})
    kset(kv, "keep", b"v")
    r = kv.post("/kv/expire/k", json={"seconds": seconds})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}
    assert_envelope(kv.get("/kv/get/k"), 404, "NOT_FOUND")
    assert missing(kv, "k")
    assert ttl(kv, "k") == -2
    assert kget(kv, "keep") == b"v"


def test_expire_missing_key(kv):
    for seconds in (10, 0, -1):
        r = kv.post("/kv/expire/nope", json={"seconds": seconds})
        assert r.status_code == 200
        assert r.json() == {"status": "key_not_found"}
    assert missing(kv, "nope")


# --- conditional writes ----------------------------------------------------------------------

def test_nx_and_xx(kv):
    assert_envelope(kv.post("/kv/set/k", data=b"x", params={"xx": 1}), 412, "PRECONDITION_FAILED")
    assert missing(kv, "k")
    etag = kset(kv, "k", b"first", params={"nx": 1})
    assert_envelope(kv.post("/kv/set/k", data=b"second", params={"nx": 1}), 412, "PRECONDITION_FAILED")
    r = kv.get("/kv/get/k")
    assert (r.content, r.headers["ETag"]) == (b"first", etag)
    kset(kv, "k", b"third", params={"xx": 1})
    assert kget(kv, "k") == b"third"


@pytest.mark.parametrize("absent,present", [
    ({"params": {"nx": 1}}, {"params": {"xx": 1}}),
    ({"params": {"nx": 1}}, {"headers": {"If-Match": "*"}}),
    ({"params": {"nx": 1}}, {"headers": {"If-Match": '"1"'}}),
    ({"params": {"nx": 1}}, {"headers": {"If-Match": 'W/"1"'}}),
    ({"headers": {"If-None-Match": "*"}}, {"params": {"xx": 1}}),
    ({"headers": {"If-None-Match": "*"}}, {"headers": {"If-Match": "*"}}),
])
def test_absent_and_present_conditions_together_are_400(kv, absent, present):
    """No key can be both absent and present: a clear 400, never a 412, on a missing key too."""
    kset(kv, "k", b"old")
    before = snapshot(kv)
    for key in ("k", "fresh"):
        kw = {"params": {**absent.get("params", {}), **present.get("params", {})},
              "headers": {**absent.get("headers", {}), **present.get("headers", {})}}
        body = assert_envelope(kv.post(f"/kv/set/{key}", data=b"new", **kw), 400, "BAD_REQUEST")
        assert "expected at most one" in body["error"]
    assert snapshot(kv) == before


@pytest.mark.parametrize("flag,value", [("nx", "yes"), ("nx", "2"), ("xx", "on"), ("xx", "abc"),
                                        ("keepttl", "yes"), ("keepttl", "TRUE")])
def test_set_refuses_a_flag_value_it_does_not_understand(kv, flag, value):
    kset(kv, "k", b"old", params={"ttl": 1000})
    before = snapshot(kv)
    body = assert_envelope(kv.post("/kv/set/k", data=b"new", params={flag: value}), 400, "BAD_REQUEST")
    assert flag in body["error"] and "expected 1, true, 0 or false" in body["error"]
    assert_envelope(kv.post("/kv/set/fresh", data=b"new", params={flag: value}), 400, "BAD_REQUEST")
    assert snapshot(kv) == before


def test_set_flags_take_1_true_empty_0_and_false(kv):
    kset(kv, "k", b"1", params={"nx": "true"})
    assert_envelope(kv.post("/kv/set/k", data=b"2", params={"nx": ""}), 412, "PRECONDITION_FAILED")
    kset(kv, "k", b"3", params={"nx": "0"})  # nx off: a plain set
    kset(kv, "k", b"4", params={"xx": "false", "keepttl": "0"})
    assert kget(kv, "k") == b"4"


def test_if_none_match_star_on_set_creates_only(kv):
    etag = kset(kv, "k", b"first", headers={"If-None-Match": "*"})
    assert_envelope(kv.post("/kv/set/k", data=b"second", headers={"If-None-Match": "*"}), 412,
                    "PRECONDITION_FAILED")
    assert_envelope(kv.post("/kv/set/k", data=b"third", headers={"If-None-Match": etag}), 400,
                    "BAD_REQUEST")
    assert kget(kv, "k") == b"first"


@pytest.mark.parametrize("route,body", [
    ("/kv/set/batch", {"a": "changed"}),
    ("/kv/del/batch", {"keys": ["a"]}),
    ("/kv/increment/n", None),
    ("/kv/expire/a", {"seconds": 5}),
    ("/kv/persist/a", None),
])
def test_routes_refuse_conditions_they_cannot_honour(kv, route, body):
    kset(kv, "a", b"1", params={"ttl": 1000})
    kset(kv, "n", b"7")
    before = snapshot(kv)
    for condition in ({"headers": {"If-Match": "*"}}, {"headers": {"If-Match": '"1"'}},
                      {"headers": {"If-None-Match": "*"}}, {"params": {"nx": 1}},
                      {"params": {"xx": 1}}, {"params": {"keepttl": 1}}):
        r = kv.post(route, json=body, **condition)
        assert "expected it on /kv/set/{key}" in assert_envelope(r, 400, "BAD_REQUEST")["error"]
    assert_envelope(kv.delete("/kv/del/a", headers={"If-None-Match": "*"}), 400, "BAD_REQUEST")
    assert snapshot(kv) == before


def test_content_type_up_to_1024_bytes(kv):
    ctype = "application/x-" + "y" * (1024 - len("application/x-"))
    kset(kv, "k", b"v", headers={"Content-Type": ctype})
    assert kv.get("/kv/get/k").headers["content-type"] == ctype
    before = snapshot(kv)
    body = assert_envelope(kv.post("/kv/set/k", data=b"w", headers={"Content-Type": ctype + "z"}),
                           400, "BAD_REQUEST")
    assert "at most 1024" in body["error"]
    assert snapshot(kv) == before


def test_if_match_compare_and_swap(kv):
    v1 = kset(kv, "k", b"1")
    v2 = kset(kv, "k", b"2", headers={"If-Match": v1})
    assert etag_version(v2) > etag_version(v1)
    assert kget(kv, "k") == b"2"
    # Stale version: nothing changes.
    assert_envelope(kv.post("/kv/set/k", data=b"lost", headers={"If-Match": v1}), 412, "PRECONDITION_FAILED")
    r = kv.get("/kv/get/k")
    assert (r.content, r.headers["ETag"]) == (b"2", v2)
    # A version from a key that has since been deleted does not resurrect it.
    assert kv.delete("/kv/del/k").json()["deleted"] == 1
    assert_envelope(kv.post("/kv/set/k", data=b"zombie", headers={"If-Match": v2}), 412,
                    "PRECONDITION_FAILED")
    assert missing(kv, "k")
    # Only one of two writers holding the same version wins.
    base = kset(kv, "race", b"0")
    a = kv.post("/kv/set/race", data=b"a", headers={"If-Match": base})
    b = kv.post("/kv/set/race", data=b"b", headers={"If-Match": base})
    assert a.status_code == 200
    assert_envelope(b, 412, "PRECONDITION_FAILED")
    assert kget(kv, "race") == b"a"


def test_delete_and_if_match_on_delete(kv):
    v1 = kset(kv, "k", b"1")
    v2 = kset(kv, "k", b"2")
    assert_envelope(kv.delete("/kv/del/k", headers={"If-Match": v1}), 412, "PRECONDITION_FAILED")
    assert kget(kv, "k") == b"2"
    r = kv.delete("/kv/del/k", headers={"If-Match": v2})
    assert r.status_code == 200
    assert r.json() == {"deleted": 1, "status": "ok"}
    assert missing(kv, "k")
    assert kv.delete("/kv/del/k").json() == {"deleted": 0, "status": "ok"}
    assert_envelope(kv.delete("/kv/del/k", headers={"If-Match": v2}), 412, "PRECONDITION_FAILED")


def test_exists(kv):
    assert kv.get("/kv/exists/k").json() == {"exists": False}
    kset(kv, "k", b"")
    r = kv.get("/kv/exists/k")
    assert r.status_code == 200
    assert r.json() == {"exists": True}


# --- increment -------------------------------------------------------------------------------

def test_increment(kv):
    assert kv.post("/kv/increment/n").json() == {"value": 1}
    assert kv.post("/kv/increment/n", params={"by": 5}).json() == {"value": 6}
    assert kv.post("/kv/increment/n", params={"by": -10}).json() == {"value": -4}
    assert kget(kv, "n") == b"-4"
    assert kv.post("/kv/increment/fresh", params={"by": -3}).json() == {"value": -3}
    kset(kv, "s", b"41")
    assert kv.post("/kv/increment/s").json() == {"value": 42}
    assert kget(kv, "s") == b"42"
    kset(kv, "neg", b"-9223372036854775807")
    assert kv.post("/kv/increment/neg", params={"by": -1}).json() == {"value": -9223372036854775808}
    for bad in ["abc", "", "1.5", "9223372036854775808", "+1"]:
        assert_envelope(kv.post("/kv/increment/n", params={"by": bad}), 400, "BAD_REQUEST")
    assert kget(kv, "n") == b"-4"


@pytest.mark.parametrize("value", [b" 7", b"", b"7.0", b"abc", b"7 ", b"0x10", b"1e3", b"--1",
                                   b"9223372036854775808", b"\x007"])
def test_increment_not_an_integer(kv, value):
    etag = kset(kv, "k", value, params={"ttl": 100})
    assert_envelope(kv.post("/kv/increment/k"), 409, "NOT_AN_INTEGER")
    r = kv.get("/kv/get/k")
    assert (r.content, r.headers["ETag"]) == (value, etag)


def test_increment_overflow(kv):
    kset(kv, "max", b"9223372036854775807")
    assert_envelope(kv.post("/kv/increment/max"), 409, "OVERFLOW")
    assert kget(kv, "max") == b"9223372036854775807"
    kset(kv, "min", b"-9223372036854775808")
    assert_envelope(kv.post("/kv/increment/min", params={"by": -1}), 409, "OVERFLOW")
    assert kget(kv, "min") == b"-9223372036854775808"
    kset(kv, "big", b"1")
    assert_envelope(kv.post("/kv/increment/big", params={"by": 9223372036854775807}), 409, "OVERFLOW")
    assert kget(kv, "big") == b"1"


def test_increment_keeps_ttl(kv):
    kset(kv, "n", b"10", params={"ttl": 100})
    assert kv.post("/kv/increment/n").json() == {"value": 11}
    assert 99 <= ttl(kv, "n") <= 100
    kset(kv, "p", b"10")
    kv.post("/kv/increment/p")
    assert ttl(kv, "p") == -1


def test_concurrent_increments_are_atomic(kv):
    local = threading.local()

    def one(_):
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.headers["Authorization"] = f"Bearer {kv.token}"
        r = local.s.post(kv.url("/kv/increment/counter"), timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["value"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        values = list(pool.map(one, range(1000)))
    assert sorted(values) == list(range(1, 1001))  # every caller saw its own step
    assert kget(kv, "counter") == b"1000"


# --- keys ------------------------------------------------------------------------------------

GLOB_KEYS = ["user:1", "user:2", "user:10", "user:a", "xuser:1", "cat", "bat", "hat", "Cat",
             "hallo", "hello", "hillo", "hllo", "lit*eral", "litXeral", "q?", "qx", "q",
             "é", "~", "a\\b"]


@pytest.mark.parametrize("pattern,expected", [
    ("*", GLOB_KEYS),
    ("user:*", ["user:1", "user:2", "user:10", "user:a"]),
    ("user:?", ["user:1", "user:2", "user:a"]),
    ("user:??", ["user:10"]),
    ("user:[12]", ["user:1", "user:2"]),
    ("user:[0-9]", ["user:1", "user:2"]),
    ("user:[0-9]*", ["user:1", "user:2", "user:10"]),
    ("[b-c]at", ["bat", "cat"]),
    ("[bch]at", ["bat", "cat", "hat"]),
    ("h[^e]llo", ["hallo", "hillo"]),
    ("[^a-z]at", ["Cat"]),
    ("lit\\*eral", ["lit*eral"]),
    ("lit*eral", ["lit*eral", "litXeral"]),
    ("q\\?", ["q?"]),
    ("q?", ["q?", "qx"]),
    ("a\\\\b", ["a\\b"]),
    # Anchored at both ends.
    ("user:1", ["user:1"]),
    ("ser:*", []),
    ("*:1", ["user:1", "xuser:1"]),
    ("user", []),
    ("*at", ["Cat", "bat", "cat", "hat"]),
    ("h*o", ["hallo", "hello", "hillo", "hllo"]),
    # Redis globs match bytes: "é" is two bytes, so one ? does not match it.
    ("?", ["q", "~"]),
    ("??", ["q?", "qx", "é"]),
    ("nothing*", []),
    # Classes parse as Redis parses them: `]` right after `[` closes the class.
    ("[]]", []),
    ("[]q]", []),
    ("[^]", ["q", "~"]),
    ("[q-", ["q"]),  # unterminated: the class runs to the end
    ("[p-]", []),  # "p-]" is the range ]..p, and the class is unterminated
])
def test_keys_glob(kv, pattern, expected):
    set_batch(kv, {k: "v" for k in GLOB_KEYS})
    page = keys_page(kv, pattern)
    assert page["keys"] == sorted_bytewise(expected)
    assert page["cursor"] is None


def test_a_hostile_glob_ends_its_page_early_and_never_holds_the_server(kv):
    """`g*aaa…ab` (500 a) against keys of 1,000 bytes costs the matcher ~500k steps per key. A
    page stops at its work budget with a cursor (possibly with no keys), so no call holds the
    I/O thread for long (one call over 20,000 such keys took 6 s), and paging still finds every
    match exactly once."""
    long_keys = {("g%04d" % i) + "a" * 1000: "v" for i in range(200)}
    matching = {("g%04d" % i) + "a" * 600 + "b": "v" for i in (3, 77, 150)}
    set_batch(kv, {**long_keys, **matching})
    pattern = "g*" + "a" * 500 + "b"
    found, cursor, calls, slowest = [], None, 0, 0.0
    while True:
        started = time.monotonic()
        page = keys_page(kv, pattern, **({"cursor": cursor} if cursor else {}))
        slowest = max(slowest, time.monotonic() - started)
        found += page["keys"]
        cursor, calls = page["cursor"], calls + 1
        if not cursor:
            break
        assert calls < 500
    assert found == sorted_bytewise(matching)
    assert calls > 3  # the budget, not the page size (100 keys), ended the pages
    assert slowest < 0.5, f"one /kv/keys call took {slowest:.2f} s"


@pytest.mark.parametrize("limit", [2, 4])
def test_keys_cursor_is_null_when_a_page_ends_with_the_last_key(kv, limit):
    set_batch(kv, {f"p{i}": "v" for i in range(4)})
    kset(kv, "q", b"after the range")
    page = keys_page(kv, "p*", limit=limit)
    if limit == 2:
        assert page["keys"] == ["p0", "p1"] and page["cursor"]
        page = keys_page(kv, "p*", limit=limit, cursor=page["cursor"])
        assert page["keys"] == ["p2", "p3"]
    else:
        assert page["keys"] == ["p0", "p1", "p2", "p3"]
    assert page["cursor"] is None


def test_keys_sorted_by_bytes(kv):
    keys = ["b", "B", "a", "aa", "a:", "a0", "Z", "é", "ü", "😀", "~", "0", " x", "a\x7f"]
    set_batch(kv, {k: "v" for k in keys})
    got = all_keys(kv, "*", limit=3)
    assert got == sorted_bytewise(keys)
    assert got[:3] == [" x", "0", "B"]
    assert got[-3:] == ["é", "ü", "😀"]


def test_keys_limit_default_clamp_and_bad_limit(kv):
    n = 10500
    for start in range(0, n, 1000):
        set_batch(kv, {f"k:{i:05d}": "v" for i in range(start, min(n, start + 1000))})
    page = keys_page(kv, "k:*")
    assert len(page["keys"]) == 1000
    assert page["keys"] == [f"k:{i:05d}" for i in range(1000)]
    assert page["cursor"]
    nxt = keys_page(kv, "k:*", cursor=page["cursor"])
    assert nxt["keys"][0] == "k:01000"

    page = keys_page(kv, "*", limit=20000)
    assert len(page["keys"]) == 10000
    assert page["cursor"]
    rest = keys_page(kv, "*", limit=20000, cursor=page["cursor"])
    assert page["keys"] + rest["keys"] == [f"k:{i:05d}" for i in range(n)]
    assert rest["cursor"] is None

    page = keys_page(kv, "k:0000*", limit=3)
    assert page["keys"] == ["k:00000", "k:00001", "k:00002"]

    for bad in ["0", "-1", "abc", ""]:
        assert_envelope(kv.get("/kv/keys/*", params={"limit": bad}), 400, "BAD_REQUEST")
    assert_envelope(kv.get("/kv/keys/*", params={"cursor": "not a cursor!"}), 400, "BAD_REQUEST")
    assert_envelope(kv.get("/kv/keys/"), 400, "BAD_REQUEST")


def test_keys_pagination_stable_under_concurrent_writes(kv):
    original = [f"k:{i:05d}" for i in range(10000)]
    for start in range(0, len(original), 1000):
        set_batch(kv, {k: "v" for k in original[start:start + 1000]})
    set_batch(kv, {"other:1": "v", "j": "v", "l": "v"})

    stop = threading.Event()
    written = []
    errors = []

    def writer():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {kv.token}"
        i = 0
        try:
            while not stop.is_set():
                # New keys all over the keyspace, and overwrites of keys that exist.
                new = f"k:{(i * 7919) % 10000:05d}:new{i}"
                for key, value in ((new, "n"), (original[(i * 104729) % 10000], f"w{i}")):
                    r = s.post(kv.url("/kv/set/" + q(key)), data=value, timeout=10)
                    if r.status_code != 200:
                        errors.append(r.text)
                        return
                written.append(new)
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(e))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        during_start = len(written)
        seen = all_keys(kv, "k:*", limit=250)
        during_end = len(written)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert during_end - during_start > 0, "the writer made no progress during the scan"
    assert len(seen) == len(set(seen)), "a key was returned twice"
    assert seen == sorted_bytewise(seen)
    assert set(original) <= set(seen)
    assert set(seen) <= set(original) | set(written)
    assert all(k.startswith("k:") for k in seen)


# --- binary values and awkward keys ----------------------------------------------------------

def test_binary_values_round_trip(kv):
    values = {
        "nul": b"a\x00b\x00",
        "bad-utf8": b"\xff\xfe\x00\x80abc\xc3",
        "all-bytes": bytes(range(256)),
        "utf8": "grüße 🚀".encode(),
        "text-with-nul": b"x\x00y",
    }
    for key, value in values.items():
        kset(kv, key, value)
        assert kget(kv, key) == value
    got = dict(get_batch(kv, list(values)))
    assert got["bad-utf8"] == [("base64", base64.b64encode(values["bad-utf8"]).decode())]
    assert got["all-bytes"] == [("base64", base64.b64encode(values["all-bytes"]).decode())]
    assert got["utf8"] == "grüße 🚀"
    assert got["nul"] == "a\x00b\x00"  # valid UTF-8, so a JSON string
    assert got["text-with-nul"] == "x\x00y"


AWKWARD_KEYS = ["a/b", "/leading", "trailing/", "100%", "%2F", "with space", "ünïcødé 🚀", "what?",
                "hash#tag", "a+b", "semi;colon", "amp&eq=1", "quote\"'", "back\\slash", "tab\there",
                "..", ".", "a/../b", "[x]", "*"]


def qq(key):
    """Like q, but also encodes '.', which requests would decode and urllib3 would then drop."""
    return q(key).replace(".", "%2E")


def test_awkward_keys_round_trip(kv):
    for i, key in enumerate(AWKWARD_KEYS):
        r = exact(kv, "POST", "/kv/set/" + qq(key), data=f"value {i}".encode())
        assert r.status_code == 200, (key, r.text)
        assert r.json() == {"key": key, "status": "ok"}
    for i, key in enumerate(AWKWARD_KEYS):
        r = exact(kv, "GET", "/kv/get/" + qq(key))
        assert (r.status_code, r.content) == (200, f"value {i}".encode()), key
        assert exact(kv, "GET", "/kv/exists/" + qq(key)).json() == {"exists": True}, key
    assert all_keys(kv, "*") == sorted_bytewise(AWKWARD_KEYS)
    # '/' inside a key is one segment: "a" was never written.
    assert missing(kv, "a") and missing(kv, "b")
    got = get_batch(kv, AWKWARD_KEYS)
    assert got == [(k, f"value {i}") for i, k in enumerate(AWKWARD_KEYS)]
    assert_envelope(kv.post("/kv/increment/" + q("100%")), 409, "NOT_AN_INTEGER")
    for key in AWKWARD_KEYS:
        r = exact(kv, "DELETE", "/kv/del/" + qq(key))
        assert r.json() == {"deleted": 1, "status": "ok"}, key
    assert all_keys(kv, "*") == []


def test_key_named_batch(kv):
    r = exact(kv, "POST", "/kv/set/%62atch", data=b"literal")
    assert r.status_code == 200, r.text
    assert r.json() == {"key": "batch", "status": "ok"}
    r = exact(kv, "GET", "/kv/get/%62atch")
    assert (r.status_code, r.content) == (200, b"literal")
    r = kv.get("/kv/get/batch")
    assert_envelope(r, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["Allow"]
    assert get_batch(kv, ["batch"]) == [("batch", "literal")]
    assert all_keys(kv, "*") == ["batch"]
    r = exact(kv, "DELETE", "/kv/del/%62atch")
    assert r.json() == {"deleted": 1, "status": "ok"}
    assert all_keys(kv, "*") == []


def test_key_length_limits(kv):
    assert_envelope(kv.get("/kv/get/"), 400, "BAD_REQUEST")
    assert_envelope(kv.post("/kv/set/", data=b"x"), 400, "BAD_REQUEST")
    assert_envelope(kv.delete("/kv/del/"), 400, "BAD_REQUEST")
    assert_envelope(kv.post("/kv/increment/"), 400, "BAD_REQUEST")
    longest = "k" * 1024
    kset(kv, longest, b"ok")
    assert kget(kv, longest) == b"ok"
    wide = "é" * 512  # 1024 bytes, 512 characters
    kset(kv, wide, b"wide")
    assert kget(kv, wide) == b"wide"
    for too_long in ("k" * 1025, "é" * 512 + "x"):
        assert_envelope(kv.post("/kv/set/" + q(too_long), data=b"x"), 400, "BAD_REQUEST")
        assert_envelope(kv.get("/kv/get/" + q(too_long)), 400, "BAD_REQUEST")
        assert_envelope(kv.post("/kv/set/batch", json={too_long: "x", "fine": "y"}), 400, "BAD_REQUEST")
        assert_envelope(kv.post("/kv/get/batch", json={"keys": [too_long]}), 400, "BAD_REQUEST")
    assert_envelope(exact(kv, "POST", "/kv/set/%FF%FE", data=b"x"), 400, "BAD_REQUEST")
    assert sorted(all_keys(kv, "*")) == sorted([longest, wide])


# --- batches ---------------------------------------------------------------------------------

def test_get_batch_order_and_duplicates(kv):
    set_batch(kv, {"a": "1", "b": "2", "c": "3"})
    got = get_batch(kv, ["c", "a", "missing", "b", "a", "c", "missing"])
    assert got == [("c", "3"), ("a", "1"), ("missing", None), ("b", "2")]
    assert get_batch(kv, []) == []


def test_set_batch_with_ttl_and_clearing_ttl(kv):
    set_batch(kv, {"a": "1", "b": "2"}, params={"ttl": 100})
    assert ttl(kv, "a") == 100 and ttl(kv, "b") == 100
    assert (kget(kv, "a"), kget(kv, "b")) == (b"1", b"2")
    set_batch(kv, {"a": "one", "c": "3"})
    assert ttl(kv, "a") == -1 and ttl(kv, "c") == -1
    assert 99 <= ttl(kv, "b") <= 100
    assert kget(kv, "a") == b"one"
    r = kv.get("/kv/get/c")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    set_batch(kv, {"unicode ✓": "wert ✓"})
    assert kget(kv, "unicode ✓") == "wert ✓".encode()


@pytest.mark.parametrize("body", [{"a": "1", "b": 2}, {"a": "1", "b": None}, {"a": "1", "b": {"x": "y"}},
                                  {"a": "1", "b": ["x"]}, {"a": "1", "b": True}])
def test_set_batch_non_string_value_writes_nothing(kv, body):
    kset(kv, "a", b"old")
    before = snapshot(kv)
    assert_envelope(kv.post("/kv/set/batch", json=body), 422, "UNPROCESSABLE")
    assert snapshot(kv) == before


def test_del_batch(kv):
    set_batch(kv, {"a": "1", "b": "2", "c": "3"})
    r = kv.post("/kv/del/batch", json={"keys": ["a", "missing", "b", "a"]})
    assert r.status_code == 200
    assert r.json()["deleted"] == 2
    assert all_keys(kv, "*") == ["c"]
    assert kv.post("/kv/del/batch", json={"keys": ["a", "b"]}).json()["deleted"] == 0
    assert kv.post("/kv/del/batch", json={"keys": []}).json()["deleted"] == 0


# --- watch -----------------------------------------------------------------------------------

def test_watch_times_out_with_304(kv):
    etag = kset(kv, "k", b"v")
    start = time.monotonic()
    r = kv.get("/kv/watch/k", params={"version": etag_version(etag), "timeout": 1}, timeout=10)
    elapsed = time.monotonic() - start
    assert r.status_code == 304
    assert r.headers["ETag"] == etag
    assert 0.9 <= elapsed < 3, elapsed
    # A quoted ETag is accepted as the version too.
    r = kv.get("/kv/watch/k", params={"version": etag, "timeout": 0}, timeout=10)
    assert r.status_code == 304
    # The timeout is a duration like every other (SPEC §11).
    for timeout, low, high in (("300ms", 0.25, 2), ("0.5", 0.45, 2), ("1s", 0.9, 3)):
        start = time.monotonic()
        r = kv.get("/kv/watch/k", params={"version": etag, "timeout": timeout}, timeout=10)
        assert r.status_code == 304
        assert low <= time.monotonic() - start < high, timeout


def test_watch_answers_at_once_on_shutdown(kv):
    etag = kset(kv, "k", b"v")
    result = {}

    def watcher():
        result["r"] = kv.get("/kv/watch/k", params={"version": etag_version(etag), "timeout": 25},
                             timeout=30)

    th = threading.Thread(target=watcher)
    th.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert kv.stop() == 0
    th.join(5)
    assert result["r"].status_code == 304 and result["r"].headers["ETag"] == etag
    assert time.monotonic() - start < 3


def test_watch_returns_at_once_when_version_differs(kv):
    old = kset(kv, "k", b"v1", headers={"Content-Type": "application/x-thing"})
    new = kset(kv, "k", b"v2", headers={"Content-Type": "application/x-thing"})
    start = time.monotonic()
    r = kv.get("/kv/watch/k", params={"version": etag_version(old), "timeout": 10}, timeout=20)
    assert time.monotonic() - start < 0.5
    assert r.status_code == 200
    assert r.content == b"v2"
    assert r.headers["ETag"] == new
    assert r.headers["content-type"] == "application/x-thing"


def _watch_in_background(kv, key, version, timeout=10):
    result = {}

    def run():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {kv.token}"
        result["response"] = s.get(kv.url("/kv/watch/" + q(key)),
                                    params={"version": version, "timeout": timeout}, timeout=timeout + 10)
        result["done"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_watch_wakes_up_on_write(kv):
    etag = kset(kv, "k", b"v1")
    thread, result = _watch_in_background(kv, "k", etag_version(etag))
    time.sleep(0.4)
    assert "response" not in result, "watch returned before anything changed"
    new = kset(kv, "k", b"v2")
    written = time.monotonic()
    thread.join(5)
    r = result["response"]
    assert r.status_code == 200
    assert (r.content, r.headers["ETag"]) == (b"v2", new)
    assert result["done"] - written < 0.5, result["done"] - written


def test_watch_missing_key_returns_when_created(kv):
    thread, result = _watch_in_background(kv, "later", 0)
    time.sleep(0.4)
    assert "response" not in result, "watch of a missing key returned at once"
    new = kset(kv, "later", b"here")
    written = time.monotonic()
    thread.join(5)
    r = result["response"]
    assert r.status_code == 200
    assert (r.content, r.headers["ETag"]) == (b"here", new)
    assert result["done"] - written < 0.5, result["done"] - written


def test_watch_bad_input(kv):
    kset(kv, "k")
    assert_envelope(kv.get("/kv/watch/k", params={"version": "abc"}), 400, "BAD_REQUEST")
    for timeout in ("soon", "-1", "2h", "3601"):
        body = assert_envelope(kv.get("/kv/watch/k", params={"version": "1", "timeout": timeout}),
                               400, "BAD_REQUEST")
        assert "up to 3600s" in body["error"]
    assert_envelope(kv.get("/kv/watch/"), 400, "BAD_REQUEST")


# --- bad input leaves state unchanged ----------------------------------------------------------

JSON_ROUTES = ["/kv/get/batch", "/kv/set/batch", "/kv/del/batch", "/kv/expire/a"]


def _seed(kv):
    kset(kv, "a", b"1", params={"ttl": 1000})
    kset(kv, "b", b"\xff binary", headers={"Content-Type": "application/octet-stream"})
    return snapshot(kv)


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("body", [b"{", b"not json", b'{"keys": ["a"]', b"", b'{"a": "1"} trailing'])
def test_malformed_json_is_400(kv, route, body):
    before = _seed(kv)
    r = kv.post(route, data=body, headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "BAD_REQUEST")
    assert snapshot(kv) == before


@pytest.mark.parametrize("route,body", [
    ("/kv/get/batch", []),
    ("/kv/get/batch", {}),
    ("/kv/get/batch", {"keys": "a"}),
    ("/kv/get/batch", {"keys": ["a", 1]}),
    ("/kv/get/batch", "a"),
    ("/kv/set/batch", ["a", "b"]),
    ("/kv/set/batch", "a"),
    ("/kv/set/batch", {"a": 1}),
    ("/kv/del/batch", {"keys": [None]}),
    ("/kv/del/batch", {"key": ["a"]}),
    ("/kv/del/batch", 42),
    ("/kv/expire/a", {}),
    ("/kv/expire/a", {"seconds": "10"}),
    ("/kv/expire/a", {"seconds": 1.5}),
    ("/kv/expire/a", {"seconds": None}),
    ("/kv/expire/a", [10]),
])
def test_wrong_shape_is_422(kv, route, body):
    before = _seed(kv)
    assert_envelope(kv.post(route, json=body), 422, "UNPROCESSABLE")
    assert snapshot(kv) == before


@pytest.mark.parametrize("route,body", [
    ("/kv/get/batch", {"keys": ["a"]}),
    ("/kv/set/batch", {"a": "2"}),
    ("/kv/del/batch", {"keys": ["a"]}),
    ("/kv/expire/a", {"seconds": 0}),
])
def test_content_type(kv, route, body):
    before = _seed(kv)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = kv.post(route, data=json.dumps(body), headers={"Content-Type": ctype})
        assert_envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert snapshot(kv) == before
    # Missing Content-Type, application/json with parameters and application/*+json are JSON.
    for ctype in (None, "application/json; charset=utf-8", "application/vnd.api+json"):
        headers = {"Content-Type": ctype} if ctype else {}
        req = requests.Request("POST", kv.url(route), data=json.dumps(body).encode(), headers=headers)
        prep = kv.session.prepare_request(req)
        if ctype is None:
            prep.headers.pop("Content-Type", None)
        r = kv.session.send(prep, timeout=10)
        assert r.status_code == 200, (ctype, r.text)


@pytest.mark.parametrize("route", ["/kv/get/batch", "/kv/set/batch", "/kv/del/batch"])
def test_huge_batch_is_413(kv, route):
    before = _seed(kv)
    keys = [f"x{i}" for i in range(10000)] + ["a"]
    body = {"keys": keys} if route != "/kv/set/batch" else {k: "v" for k in keys}
    assert_envelope(kv.post(route, json=body), 413, "PAYLOAD_TOO_LARGE")
    assert snapshot(kv) == before
    # 10000 is allowed.
    ok = {"keys": keys[:10000]} if route != "/kv/set/batch" else {k: "v" for k in keys[:10000]}
    assert kv.post(route, json=ok).status_code == 200


# --- metrics ---------------------------------------------------------------------------------

def backend_calls(kv):
    """{operation: calls} of the kv service's backend, and the errors counted."""
    from conftest import metrics
    calls, errors = {}, {}
    for (name, labels), value in metrics(kv).items():
        labels = dict(labels)
        if labels.get("service") != "kv":
            continue
        if name == "mikcar_backend_calls_total":
            calls[labels["operation"]] = value
        elif name == "mikcar_backend_errors_total":
            errors[(labels["operation"], labels["reason"])] = value
    return calls, errors


def test_metrics_count_backend_calls_by_operation(kv):
    kset(kv, "a", b"1")
    kset(kv, "b", b"2")
    assert kget(kv, "a") == b"1"
    assert kv.get("/kv/get/nope").status_code == 404  # an answer, not a failure
    assert kv.post("/kv/increment/n").status_code == 200
    assert kv.post("/kv/set/a", data=b"x", params={"nx": 1}).status_code == 412  # an answer too
    calls, errors = backend_calls(kv)
    assert calls == {"set": 3, "get": 2, "increment": 1}, calls
    assert errors == {}


def test_metrics_count_a_backend_that_went_away(start_mikcar, tmp_path):
    """A Redis that stops answering: the failed calls count as unavailable."""
    import socket
    import subprocess
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        kv = start_mikcar(["--kv"], env={"KV_URL": f"redis://127.0.0.1:{port}"},
                          data_dir=str(tmp_path))
        kset(kv, "a", b"1")
    finally:
        redis.kill()
        redis.wait()
    for _ in range(3):
        r = kv.get("/kv/get/a", timeout=30)
        assert r.status_code in (502, 503, 504), r.text
    calls, errors = backend_calls(kv)
    assert calls == {"set": 1, "get": 3}, calls
    assert sum(errors.values()) == 3 and all(op == "get" for op, _ in errors), errors
