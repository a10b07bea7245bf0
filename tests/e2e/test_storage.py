"""Conformance suite for /storage (SPEC §4, §11 "Storage:"), run against memory:// and
file://<tmp>/objects.

The `st` fixture starts `mikcar --storage` once per test on each backend. Every test taking `st`
or `launch` must pass on both: the HTTP contract does not depend on where the bytes live. Tests
taking `fst` are about the file:// backend only (symlinks, crashes, restarts, streaming memory).

Object paths always go on the wire through `send()`, byte for byte: requests would decode %2E
and %62, and urllib3 would drop dot segments.
"""
import base64
import concurrent.futures
import datetime
import email.utils
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import threading
import time
import urllib.parse

import pytest
import requests

from conftest import TOKEN, Mikcar, assert_envelope

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
HTTP_DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
IDENTITY = {"Accept-Encoding": "identity"}
MIB = 1 << 20


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(params=["memory", "file"])
def backend(request):
    return request.param


@pytest.fixture
def launch(backend, start_mikcar, tmp_path):
    """launch(args, env, data_dir, root) → a running `mikcar --storage` on this test's backend.
    Defaults: data dir <tmp>/data, file root <tmp>/objects (so a relaunch sees the same state)."""

    def go(args=(), env=None, data_dir=None, root=None):
        data_dir = str(data_dir or tmp_path / "data")
        os.makedirs(data_dir, exist_ok=True)
        root = str(root or tmp_path / "objects")
        url = "memory://" if backend == "memory" else f"file://{root}"
        m = start_mikcar(["--storage", *args], env={"STORAGE_URL": url, **(env or {})}, data_dir=data_dir)
        m.backend, m.root = backend, (root if backend == "file" else None)
        return m

    return go


@pytest.fixture
def st(launch):
    return launch()


@pytest.fixture
def fst(start_mikcar, tmp_path):
    """file:// only: launch_file(...) like `launch`, on <tmp>/objects."""

    def go(args=(), env=None):
        os.makedirs(tmp_path / "data", exist_ok=True)
        m = start_mikcar(["--storage", *args], env={"STORAGE_URL": f"file://{tmp_path}/objects", **(env or {})},
                         data_dir=str(tmp_path / "data"))
        m.root = str(tmp_path / "objects")
        return m

    return go


# --- helpers ---------------------------------------------------------------------------------

def enc(path):
    """Percent-encode an object path segment by segment ('/' stays the separator); segments made
    only of dots are encoded too so nothing on the way can treat them as dot segments."""
    out = []
    for seg in path.split("/"):
        e = urllib.parse.quote(seg, safe="")
        out.append(e.replace(".", "%2E") if seg and set(seg) == {"."} else e)
    return "/".join(out)


def obj(path, params=None):
    return "/storage/object/" + enc(path) + ("?" + urllib.parse.urlencode(params) if params else "")


def send(m, method, target, session=None, timeout=60, stream=False, **kw):
    """Send `target` (path + query) exactly as given."""
    s = session or m.session
    prep = s.prepare_request(requests.Request(method, m.url("/"), **kw))
    prep.url = m.base + target
    return s.send(prep, timeout=timeout, stream=stream)


def anon(m, method, target, **kw):
    """A request without the bearer token (presigned URLs)."""
    return send(m, method, target, session=requests.Session(), **kw)


def md5_etag(body):
    return '"%s"' % hashlib.md5(body).hexdigest()


def put(m, path, body=b"", headers=None):
    r = send(m, "PUT", obj(path), data=body, headers=headers)
    assert r.status_code == 201, (path, r.text)
    assert r.json() == {"path": path, "status": "created"}
    if isinstance(body, bytes):
        assert r.headers["ETag"] == md5_etag(body), path
    return r.headers["ETag"]


def get(m, path, headers=None, **kw):
    return send(m, "GET", obj(path), headers=headers, **kw)


def fetch(m, path):
    r = get(m, path)
    assert r.status_code == 200, (path, r.text)
    assert r.headers["ETag"] == md5_etag(r.content), path
    return r.content


def head(m, path, headers=None):
    return send(m, "HEAD", obj(path), headers=headers)


def delete(m, path):
    return send(m, "DELETE", obj(path))


def absent(m, path):
    r = get(m, path)
    assert_envelope(r, 404, "NOT_FOUND")
    return True


def list_page(m, prefix=None, **params):
    target = "/storage/list" + ("/" + enc(prefix) if prefix is not None else "")
    if params:
        target += "?" + urllib.parse.urlencode(params)
    r = send(m, "GET", target)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"objects", "next_offset"} <= set(body), body
    return body


def list_all(m, prefix=None, limit=None, **params):
    out, offset = [], None
    for _ in range(10000):
        p = dict(params)
        if limit:
            p["limit"] = limit
        if offset is not None:
            p["offset"] = offset
        page = list_page(m, prefix, **p)
        out += [o["location"] for o in page["objects"]]
        offset = page["next_offset"]
        if offset is None:
            return out
        assert page["objects"] and offset == page["objects"][-1]["location"], page
    raise AssertionError("list pagination did not end")


def bytewise(keys):
    return sorted(keys, key=lambda k: k.encode())


def put_many(m, paths, body=b"x"):
    local = threading.local()

    def one(path):
        if not hasattr(local, "s"):
            local.s = requests.Session()
            local.s.headers["Authorization"] = f"Bearer {m.token}"
        r = send(m, "PUT", obj(path), session=local.s, data=body)
        assert r.status_code == 201, r.text

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, paths))


def http_date(value):
    assert HTTP_DATE.match(value), value
    return email.utils.parsedate_to_datetime(value)


def rfc3339(value, z=False):
    assert (RFC3339_Z if z else RFC3339).match(value), value
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def near_now(dt, slack=120):
    return abs(dt.timestamp() - time.time()) < slack


def meta_headers(r):
    """x-meta-* response headers with their names exactly as sent on the wire."""
    return {k: v for k, v in r.headers.items() if k.lower().startswith("x-meta-")}


class Raw:
    """One raw HTTP/1.1 connection, for what requests cannot express."""

    def __init__(self, m, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", m.port), timeout=timeout)
        self.buf = b""

    def head(self, method, target, headers):
        lines = [f"{method} {target} HTTP/1.1", "Host: mikcar", f"Authorization: Bearer {TOKEN}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data):
        self.sock.sendall(data)

    def response(self, timeout=10.0):
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unread: {self.buf!r}")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = requests.structures.CaseInsensitiveDict(
            (k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:]))
        length = 0 if 100 <= status < 200 or status in (204, 304) else int(headers.get("content-length", 0))
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        resp = requests.Response()
        resp.status_code, resp.headers, resp._content = status, headers, body
        resp.status_line = lines[0]
        return resp

    def close(self):
        self.sock.close()


# --- PUT / GET / HEAD / DELETE ---------------------------------------------------------------

def test_put_get_round_trip_with_content_type_and_metadata(st):
    body = b"hello \x00\xff world"
    r = send(st, "PUT", obj("docs/a.bin"), data=body, headers={
        "Content-Type": "text/plain; charset=utf-8", "X-Meta-Owner": "Alice Smith", "x-meta-Project-ID": "42",
        "X-Custom": "not metadata"})
    assert r.status_code == 201, r.text
    assert r.json() == {"path": "docs/a.bin", "status": "created"}
    assert r.headers["ETag"] == md5_etag(body)
    r = get(st, "docs/a.bin", headers=IDENTITY)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["ETag"] == md5_etag(body)
    assert near_now(http_date(r.headers["Last-Modified"]))
    assert meta_headers(r) == {"x-meta-owner": "Alice Smith", "x-meta-project-id": "42"}
    assert "x-custom" not in r.headers


def test_defaults_empty_and_binary_objects(st):
    put(st, "empty", b"")
    r = get(st, "empty")
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert r.headers["Content-Length"] == "0"
    assert meta_headers(r) == {}
    blob = bytes(range(256)) * 64
    put(st, "blob", blob)
    assert fetch(st, "blob") == blob


def test_replace_is_201_and_replaces_everything(st):
    put(st, "k", b"first", headers={"Content-Type": "text/html", "X-Meta-A": "1"})
    etag = put(st, "k", b"second version")
    r = get(st, "k")
    assert r.content == b"second version"
    assert r.headers["ETag"] == etag
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert meta_headers(r) == {}


def test_missing_object_is_404_everywhere(st):
    assert_envelope(get(st, "nope"), 404, "NOT_FOUND")
    assert_envelope(delete(st, "nope"), 404, "NOT_FOUND")
    r = head(st, "nope")
    assert r.status_code == 404 and r.content == b""
    assert_envelope(get(st, "nope", headers={"Range": "bytes=0-1"}), 404, "NOT_FOUND")
    assert_envelope(get(st, "nope", headers={"If-None-Match": "*"}), 404, "NOT_FOUND")


def test_head_has_get_headers_and_compat_extras(st):
    body = b"0123456789" * 7
    etag = put(st, "h/obj", body, headers={"Content-Type": "application/json", "X-Meta-Colour": "blue"})
    g = get(st, "h/obj", headers=IDENTITY)
    r = head(st, "h/obj", headers=IDENTITY)
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(body))
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["ETag"] == etag
    assert r.headers["Last-Modified"] == g.headers["Last-Modified"]
    assert meta_headers(r) == {"x-meta-colour": "blue"}
    assert r.headers["x-object-size"] == str(len(body))
    lm = rfc3339(r.headers["x-last-modified"], z=True)
    assert int(lm.timestamp()) == int(http_date(r.headers["Last-Modified"]).timestamp())


def test_delete(st):
    put(st, "d/e/f", b"1")
    put(st, "keep", b"2")
    r = delete(st, "d/e/f")
    assert r.status_code == 200
    assert r.json() == {"path": "d/e/f", "status": "deleted"}
    assert absent(st, "d/e/f")
    assert_envelope(delete(st, "d/e/f"), 404, "NOT_FOUND")
    assert list_all(st) == ["keep"]
    # No empty "directory" is left behind as a common prefix.
    page = list_page(st, delimiter="/")
    assert page["common_prefixes"] == [] and [o["location"] for o in page["objects"]] == ["keep"]


def test_object_and_prefix_coexist(st):
    put(st, "x", b"file x")
    put(st, "x/y", b"file x/y")
    put(st, "p/q/r", b"deep")
    put(st, "p/q", b"middle")
    put(st, "p", b"top")
    assert (fetch(st, "x"), fetch(st, "x/y")) == (b"file x", b"file x/y")
    assert (fetch(st, "p"), fetch(st, "p/q"), fetch(st, "p/q/r")) == (b"top", b"middle", b"deep")
    assert list_all(st) == ["p", "p/q", "p/q/r", "x", "x/y"]
    assert delete(st, "x").status_code == 200
    assert fetch(st, "x/y") == b"file x/y"
    assert absent(st, "x")
    assert delete(st, "p/q").status_code == 200
    assert (fetch(st, "p"), fetch(st, "p/q/r")) == (b"top", b"deep")
    assert list_all(st) == ["p", "p/q/r", "x/y"]


def test_a_prefix_is_not_an_object(st):
    put(st, "dir/file", b"f")
    assert_envelope(get(st, "dir"), 404, "NOT_FOUND")
    assert head(st, "dir").status_code == 404
    assert_envelope(delete(st, "dir"), 404, "NOT_FOUND")
    assert_envelope(get(st, "dir/"), 404, "NOT_FOUND")
    assert fetch(st, "dir/file") == b"f"


def test_twelve_mib_object_beats_the_json_body_limit_and_streams_chunked(st):
    body = os.urandom(12 * MIB)
    put(st, "big/fixed", body)
    assert fetch(st, "big/fixed") == body

    def chunks():
        for i in range(0, len(body), 256 * 1024):
            yield body[i:i + 256 * 1024]

    r = send(st, "PUT", obj("big/chunked"), data=chunks())
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == md5_etag(body)
    assert fetch(st, "big/chunked") == body


def test_clients_that_leave_in_the_middle_of_a_download_cost_only_their_connection(st):
    """Clients that close or reset their connection with most of an 8 MiB object unsent: the
    file backend sends it with sendfile(2), and a write to a connection the peer has left
    raises SIGPIPE, which ended the whole process until the server ignored it."""
    body = os.urandom(8 * MIB)
    put(st, "big/left", body)
    for i in range(100):
        c = Raw(st)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.head("GET", obj("big/left"), {})
        assert c.sock.recv(1000)
        if i % 2:  # a reset (RST) instead of a close (FIN)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        time.sleep(0.002)
    assert st.proc.poll() is None, "mikcar ended"
    assert st.get("/health").status_code == 200
    assert fetch(st, "big/left") == body


def test_expect_100_continue_on_put(st):
    c = Raw(st)
    try:
        c.head("PUT", obj("expect"), {"Content-Length": 11, "Expect": "100-continue"})
        interim = c.response(timeout=3)
        assert interim.status_code == 100, interim.status_line
        c.send(b"hello world")
        r = c.response()
        assert r.status_code == 201, r.text
    finally:
        c.close()
    assert fetch(st, "expect") == b"hello world"


# --- conditional requests --------------------------------------------------------------------

def test_put_if_none_match_star_creates_only(st):
    etag = put(st, "once", b"original", headers={"If-None-Match": "*"})
    r = send(st, "PUT", obj("once"), data=b"overwrite", headers={"If-None-Match": "*"})
    assert_envelope(r, 412, "PRECONDITION_FAILED")
    r = get(st, "once")
    assert (r.content, r.headers["ETag"]) == (b"original", etag)


def test_put_if_match(st):
    v1 = put(st, "cas", b"one")
    v2 = put(st, "cas", b"two", headers={"If-Match": v1})
    assert fetch(st, "cas") == b"two"
    r = send(st, "PUT", obj("cas"), data=b"stale", headers={"If-Match": v1})
    assert_envelope(r, 412, "PRECONDITION_FAILED")
    assert fetch(st, "cas") == b"two"
    # If-Match on a missing object never creates it.
    r = send(st, "PUT", obj("ghost"), data=b"x", headers={"If-Match": v2})
    assert_envelope(r, 412, "PRECONDITION_FAILED")
    assert absent(st, "ghost")


def test_concurrent_create_only_has_one_winner(st):
    barrier = threading.Barrier(8)

    def one(i):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {st.token}"
        barrier.wait()
        return i, send(st, "PUT", obj("lock"), session=s, data=f"owner {i}".encode() * 1000,
                       headers={"If-None-Match": "*"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(8)))
    winners = [i for i, r in results if r.status_code == 201]
    assert len(winners) == 1, [(i, r.status_code) for i, r in results]
    for i, r in results:
        if i not in winners:
            assert_envelope(r, 412, "PRECONDITION_FAILED")
    assert fetch(st, "lock") == f"owner {winners[0]}".encode() * 1000


def test_content_md5(st):
    body = b"checked body"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    put(st, "md5", body, headers={"Content-MD5": good})
    assert fetch(st, "md5") == body
    r = send(st, "PUT", obj("md5"), data=b"corrupted in transit", headers={"Content-MD5": good})
    assert_envelope(r, 400, "BAD_DIGEST")
    assert fetch(st, "md5") == body
    r = send(st, "PUT", obj("fresh"), data=body, headers={"Content-MD5": bad})
    assert_envelope(r, 400, "BAD_DIGEST")
    assert absent(st, "fresh")
    r = send(st, "PUT", obj("fresh"), data=iter([b"checked ", b"body!"]), headers={"Content-MD5": good})
    assert_envelope(r, 400, "BAD_DIGEST")  # chunked: checked at the end of the stream
    assert absent(st, "fresh")
    r = send(st, "PUT", obj("fresh"), data=body, headers={"Content-MD5": "not base64 at all!"})
    assert r.status_code == 400, r.text
    assert_envelope(r, 400, r.json()["code"])
    assert absent(st, "fresh")
    assert list_all(st) == ["md5"]


def test_get_if_none_match_304(st):
    old = put(st, "c", b"v1")
    new = put(st, "c", b"v2")
    for value in (new, "*", f'{old}, {new}'):
        r = get(st, "c", headers={"If-None-Match": value})
        assert r.status_code == 304, value
        assert r.content == b""
        assert r.headers["ETag"] == new
    r = get(st, "c", headers={"If-None-Match": old})
    assert (r.status_code, r.content) == (200, b"v2")


def test_get_if_modified_since(st):
    put(st, "c", b"v")
    lm = get(st, "c").headers["Last-Modified"]
    r = get(st, "c", headers={"If-Modified-Since": lm})
    assert (r.status_code, r.content) == (304, b"")
    earlier = email.utils.format_datetime(http_date(lm) - datetime.timedelta(hours=1), usegmt=True)
    r = get(st, "c", headers={"If-Modified-Since": earlier})
    assert (r.status_code, r.content) == (200, b"v")
    r = get(st, "c", headers={"If-Modified-Since": "not a date"})
    assert (r.status_code, r.content) == (200, b"v")


def test_get_if_match(st):
    etag = put(st, "c", b"v")
    r = get(st, "c", headers={"If-Match": etag})
    assert (r.status_code, r.content) == (200, b"v")
    assert_envelope(get(st, "c", headers={"If-Match": md5_etag(b"other")}), 412, "PRECONDITION_FAILED")


# --- ranges ----------------------------------------------------------------------------------

RANGE_BODY = bytes(range(100))


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=0-9", 0, 9),
    ("bytes=0-0", 0, 0),
    ("bytes=99-99", 99, 99),
    ("bytes=10-", 10, 99),
    ("bytes=-5", 95, 99),
    ("bytes=95-1000", 95, 99),   # the end is clamped to the object
    ("bytes=-500", 0, 99),       # a suffix longer than the object is the whole object
])
def test_range(st, spec, first, last):
    put(st, "r", RANGE_BODY)
    r = get(st, "r", headers={"Range": spec})
    assert r.status_code == 206, r.text
    assert r.content == RANGE_BODY[first:last + 1]
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/100"
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.headers["ETag"] == md5_etag(RANGE_BODY)


@pytest.mark.parametrize("spec", ["bytes=100-", "bytes=100-200", "bytes=5000-5001"])
def test_unsatisfiable_range_is_416(st, spec):
    put(st, "r", RANGE_BODY)
    r = get(st, "r", headers={"Range": spec})
    assert_envelope(r, 416, "RANGE_NOT_SATISFIABLE")
    assert r.headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize("spec", ["bytes=0-", "bytes=-5", "bytes=0-0"])
def test_any_range_on_empty_object_is_416(st, spec):
    put(st, "empty", b"")
    r = get(st, "empty", headers={"Range": spec})
    assert_envelope(r, 416, "RANGE_NOT_SATISFIABLE")
    assert r.headers["Content-Range"] == "bytes */0"


@pytest.mark.parametrize("spec", ["bytes=5-2", "bytes=abc", "items=0-5", "bytes=0-1,5-6", "bytes=", "bytes=--5"])
def test_malformed_or_multi_range_is_ignored(st, spec):
    put(st, "r", RANGE_BODY)
    r = get(st, "r", headers={"Range": spec})
    assert r.status_code == 200, (spec, r.status_code, r.text)
    assert r.content == RANGE_BODY
    assert "Content-Range" not in r.headers


def test_range_responses_are_never_gzipped(st):
    body = b"compress me please " * 4000
    put(st, "text", body, headers={"Content-Type": "text/plain"})
    r = get(st, "text", headers={"Range": "bytes=100-8099", "Accept-Encoding": "gzip"})
    assert r.status_code == 206
    assert "Content-Encoding" not in r.headers
    assert r.content == body[100:8100]
    assert r.headers["Content-Length"] == "8000"
    # The full object may be gzipped, but always decodes to the stored bytes.
    assert get(st, "text", headers={"Accept-Encoding": "gzip"}).content == body


# --- path rules ------------------------------------------------------------------------------

EMPTY, ABSOLUTE = "Path cannot be empty", "Absolute paths not allowed"
NUL, TRAVERSAL = "Null bytes not allowed in path", "Path traversal not allowed"

# Raw (already percent-encoded) URL path after /storage/object/.
BAD_URL_PATHS = [
    ("", EMPTY),
    ("%2Fabs", ABSOLUTE), ("/abs", ABSOLUTE), ("%2F", ABSOLUTE), ("%5Cwin", ABSOLUTE), ("%5C", ABSOLUTE),
    ("a%00b", NUL), ("%00", NUL), ("dir/%00", NUL),
    ("..", TRAVERSAL), ("../x", TRAVERSAL), ("a/../b", TRAVERSAL), ("a/..", TRAVERSAL), ("a/b/../../..", TRAVERSAL),
    ("%2e%2e", TRAVERSAL), ("%2E%2E/x", TRAVERSAL), ("a/%2e%2E/b", TRAVERSAL), ("a%2F..%2Fb", TRAVERSAL),
    (".%2e/etc/passwd", TRAVERSAL), ("a/..%2F..%2Fetc", TRAVERSAL),
]


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
@pytest.mark.parametrize("raw,message", BAD_URL_PATHS)
def test_bad_object_paths(st, method, raw, message):
    r = send(st, method, "/storage/object/" + raw, data=b"payload" if method == "PUT" else None)
    body = assert_envelope(r, 400, "BAD_REQUEST")
    assert body["error"] == message, (raw, body)
    assert send(st, "HEAD", "/storage/object/" + raw).status_code == 400
    assert list_all(st) == []


def test_bad_paths_in_json_bodies(st):
    put(st, "ok", b"1")
    for path, message in [("", EMPTY), ("/abs", ABSOLUTE), ("\\win", ABSOLUTE), ("a\x00b", NUL),
                          ("..", TRAVERSAL), ("a/../b", TRAVERSAL), ("../ok", TRAVERSAL)]:
        for body in ({"from": path, "to": "copy"}, {"from": "ok", "to": path}):
            r = send(st, "POST", "/storage/copy", json=body)  # the message may name the field
            assert message in assert_envelope(r, 400, "BAD_REQUEST")["error"], (body, r.text)
        r = send(st, "POST", "/storage/delete/batch", json={"paths": ["ok", path]})
        assert message in assert_envelope(r, 400, "BAD_REQUEST")["error"], (path, r.text)
    assert list_all(st) == ["ok"]  # nothing copied, nothing deleted


@pytest.mark.parametrize("raw,message", [("", EMPTY), ("%2Fabs", ABSOLUTE), ("a%00", NUL), ("a/%2E%2E/b", TRAVERSAL)])
def test_bad_presign_paths(st, raw, message):
    r = send(st, "POST", "/storage/presign/" + raw, json={"method": "PUT"})
    assert assert_envelope(r, 400, "BAD_REQUEST")["error"] == message


def test_path_length_limit(st):
    for path in ("k" * 1024, "é" * 512, "seg/" * 255 + "abcd"):
        assert len(path.encode()) == 1024
        put(st, path, path.encode())
        assert fetch(st, path) == path.encode()
    for path in ("k" * 1025, "é" * 512 + "x", "seg/" * 256 + "x"):
        assert_envelope(send(st, "PUT", obj(path), data=b"x"), 400, "BAD_REQUEST")
        assert_envelope(get(st, path), 400, "BAD_REQUEST")
    assert len(list_all(st)) == 3


AWKWARD = ["with space", "100%", "%2F", "hash#tag", "what?x=1&y", "ünïcødé 🚀", "a+b", "semi;colon",
           "quote\"'", "[x]", "*", "tilde~", "tab\there", "back\\slash", "...", "a..b", "..a", "a/b",
           "a/./b", "./lead", "tail/.", ".", "a//b", "trailing/", "trailing", "deep/er/still/file.txt",
           "s" * 300, "long/" + "L" * 300 + "/x"]


def test_awkward_keys_round_trip(st):
    for i, key in enumerate(AWKWARD):
        put(st, key, f"value {i}".encode())
    for i, key in enumerate(AWKWARD):
        assert fetch(st, key) == f"value {i}".encode(), key
        r = head(st, key)
        assert r.status_code == 200 and r.headers["x-object-size"] == str(len(f"value {i}")), key
    assert list_all(st) == bytewise(AWKWARD)
    assert list_all(st, limit=4) == bytewise(AWKWARD)
    # Segment prefixes over awkward keys: "a" means "a/…", not "a+b" or "a..b".
    assert list_all(st, "a") == bytewise([k for k in AWKWARD if k.startswith("a/")])
    assert list_all(st, "deep/er") == ["deep/er/still/file.txt"]
    for key in AWKWARD:
        r = delete(st, key)
        assert r.status_code == 200 and r.json() == {"path": key, "status": "deleted"}, key
    assert list_all(st) == []


# Keys that look like a backend's escapes or internal files are ordinary keys.
LOOKALIKE = [".mikcar", ".mikcar/tmp/.upload-0123", ".tmp", "%", "%o", "x", "x/%o", "x/%", "%2E", "%252E",
             "%h" + "0" * 64, "a/%/b", "a//b", "a/%2F/b", ".meta", "x.meta", "~tmp", "#upload#"]


def test_lookalike_keys_stay_distinct(st):
    for i, key in enumerate(LOOKALIKE):
        put(st, key, f"{i}:{key}".encode())
    for i, key in enumerate(LOOKALIKE):
        assert fetch(st, key) == f"{i}:{key}".encode(), key
    assert list_all(st) == bytewise(LOOKALIKE)
    page = list_page(st, delimiter="/")
    assert page["common_prefixes"] == [".mikcar/", "a/", "x/"]
    for key in LOOKALIKE[::2]:
        assert delete(st, key).status_code == 200, key
    assert list_all(st) == bytewise(LOOKALIKE[1::2])
    for i, key in enumerate(LOOKALIKE[1::2]):
        assert fetch(st, key) == f"{2 * i + 1}:{key}".encode(), key


# --- list ------------------------------------------------------------------------------------

def test_list_entries(st):
    etag = put(st, "docs/readme.md", b"# hi", headers={"Content-Type": "text/markdown"})
    put(st, "docs/empty", b"")
    page = list_page(st)
    assert page["next_offset"] is None
    first, second = page["objects"]
    assert set(first) >= {"location", "size", "last_modified", "e_tag", "content_type"}
    assert (first["location"], first["size"], first["content_type"]) == ("docs/empty", 0, "application/octet-stream")
    assert (second["location"], second["size"], second["e_tag"], second["content_type"]) == \
           ("docs/readme.md", 4, etag, "text/markdown")
    assert near_now(rfc3339(second["last_modified"]))


def test_list_sorted_by_utf8_bytes(st):
    keys = ["b", "B", "a", "a/b", "a b", "a-b", "a0", "é", "ü", "😀", "\uffff", "~", "0", "Z"]
    put_many(st, keys)
    assert list_all(st) == bytewise(keys)
    assert list_all(st, limit=3) == bytewise(keys)
    assert list_all(st)[-3:] == ["ü", "\uffff", "😀"]  # U+FFFF sorts before U+1F600 as bytes (not as UTF-16)


def test_list_pagination_offset_and_cursor(st):
    keys = [f"k{i:02d}" for i in range(25)]
    put_many(st, keys)
    page = list_page(st, limit=10)
    assert [o["location"] for o in page["objects"]] == keys[:10]
    assert page["next_offset"] == "k09"
    page = list_page(st, limit=10, offset="k09")
    assert [o["location"] for o in page["objects"]] == keys[10:20]
    page = list_page(st, limit=10, cursor=page["next_offset"])
    assert [o["location"] for o in page["objects"]] == keys[20:]
    assert page["next_offset"] is None
    # offset is an exclusive start key; it need not exist.
    page = list_page(st, offset="k115")
    assert [o["location"] for o in page["objects"]] == keys[12:]
    page = list_page(st, offset="zzz")
    assert (page["objects"], page["next_offset"]) == ([], None)


def test_list_limit_default_clamp_and_bad_values(st):
    keys = [f"n/{i:04d}" for i in range(1003)]
    put_many(st, keys)
    page = list_page(st)
    assert [o["location"] for o in page["objects"]] == keys[:1000]
    assert page["next_offset"] == keys[999]
    page = list_page(st, limit=5000)
    assert len(page["objects"]) == 1000
    rest = list_page(st, limit=5000, offset=page["next_offset"])
    assert [o["location"] for o in rest["objects"]] == keys[1000:]
    assert rest["next_offset"] is None
    for bad in ["0", "-1", "abc", "1.5", ""]:
        assert_envelope(send(st, "GET", "/storage/list?limit=" + bad), 400, "BAD_REQUEST")


PREFIX_KEYS = ["user", "user/1", "user/2/x", "users/1", "username", "user.txt", "other/user/1", "a b/c", "a bc"]


@pytest.mark.parametrize("prefix,expected", [
    ("user", ["user/1", "user/2/x"]),
    ("user/2", ["user/2/x"]),
    ("users", ["users/1"]),
    ("use", []),
    ("other", ["other/user/1"]),
    ("a b", ["a b/c"]),
    ("nothing", []),
])
def test_list_prefix_is_segment_based(st, prefix, expected):
    put_many(st, PREFIX_KEYS)
    assert list_all(st, prefix) == expected
    page = list_page(st, prefix)
    assert page["next_offset"] is None


@pytest.mark.parametrize("prefix,expected", [
    ("user", ["user", "user.txt", "user/1", "user/2/x", "username", "users/1"]),
    ("user/", ["user/1", "user/2/x"]),
    ("use", ["user", "user.txt", "user/1", "user/2/x", "username", "users/1"]),
    ("a b", ["a b/c", "a bc"]),
])
def test_list_prefix_mode_string(st, prefix, expected):
    put_many(st, PREFIX_KEYS)
    assert list_all(st, prefix, prefix_mode="string") == expected


def test_list_prefix_with_offset(st):
    put_many(st, PREFIX_KEYS)
    assert list_all(st, "user", offset="user/1") == ["user/2/x"]


def test_list_delimiter(st):
    put_many(st, ["a.txt", "dir/1", "dir/2", "dir/sub/3", "dir/sub/deeper/4", "dir2/x", "z"])
    page = list_page(st, delimiter="/")
    assert [o["location"] for o in page["objects"]] == ["a.txt", "z"]
    assert page["common_prefixes"] == ["dir/", "dir2/"]
    page = list_page(st, "dir", delimiter="/")
    assert [o["location"] for o in page["objects"]] == ["dir/1", "dir/2"]
    assert page["common_prefixes"] == ["dir/sub/"]
    page = list_page(st, "dir/sub", delimiter="/")
    assert [o["location"] for o in page["objects"]] == ["dir/sub/3"]
    assert page["common_prefixes"] == ["dir/sub/deeper/"]


def test_list_delimiter_pagination_returns_everything_once(st):
    keys = [f"d{i}/x" for i in range(5)] + [f"d{i}/y/z" for i in range(5)] + [f"f{i}" for i in range(5)]
    put_many(st, keys)
    objects, prefixes, offset = [], [], None
    for _ in range(50):
        page = list_page(st, delimiter="/", limit=2, **({"offset": offset} if offset else {}))
        objects += [o["location"] for o in page["objects"]]
        prefixes += page["common_prefixes"]
        offset = page["next_offset"]
        if offset is None:
            break
    assert objects == [f"f{i}" for i in range(5)]
    assert prefixes == [f"d{i}/" for i in range(5)]


def test_list_needs_the_token(st):
    assert_envelope(anon(st, "GET", "/storage/list"), 401, "UNAUTHORIZED")


# --- copy ------------------------------------------------------------------------------------

def test_copy_keeps_content_type_and_metadata(st):
    body = os.urandom(3 * MIB)
    etag = put(st, "src/file", body, headers={"Content-Type": "image/png", "X-Meta-Author": "bob"})
    r = send(st, "POST", "/storage/copy", json={"from": "src/file", "to": "dst/copy of file"})
    assert r.status_code == 200, r.text
    assert r.json() == {"from": "src/file", "to": "dst/copy of file", "e_tag": etag, "status": "copied"}
    assert r.headers["ETag"] == etag
    g = get(st, "dst/copy of file")
    assert g.content == body
    assert g.headers["Content-Type"] == "image/png"
    assert meta_headers(g) == {"x-meta-author": "bob"}
    assert fetch(st, "src/file") == body
    # Copy over an existing object replaces it.
    put(st, "other", b"old", headers={"Content-Type": "text/plain"})
    r = send(st, "POST", "/storage/copy", json={"from": "src/file", "to": "other"})
    assert r.status_code == 200
    g = get(st, "other")
    assert (g.content, g.headers["Content-Type"]) == (body, "image/png")
    assert list_all(st) == ["dst/copy of file", "other", "src/file"]


def test_copy_onto_itself_keeps_the_object(st):
    etag = put(st, "same", b"content", headers={"Content-Type": "text/plain", "X-Meta-K": "v"})
    r = send(st, "POST", "/storage/copy", json={"from": "same", "to": "same"})
    assert r.status_code in (200, 400, 409, 422), r.text
    g = get(st, "same")
    assert (g.status_code, g.content, g.headers["ETag"]) == (200, b"content", etag)
    assert g.headers["Content-Type"] == "text/plain" and meta_headers(g) == {"x-meta-k": "v"}


def test_copy_missing_source_is_404(st):
    assert_envelope(send(st, "POST", "/storage/copy", json={"from": "nope", "to": "x"}), 404, "NOT_FOUND")
    assert list_all(st) == []


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"from": "a", "to": "b"} trailing', b""])
def test_copy_malformed_json_is_400(st, body):
    put(st, "a", b"1")
    r = send(st, "POST", "/storage/copy", data=body, headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "BAD_REQUEST")
    assert list_all(st) == ["a"]


@pytest.mark.parametrize("body", [{}, {"from": "a"}, {"to": "b"}, {"from": 1, "to": "b"}, {"from": "a", "to": None},
                                  ["a", "b"], "a"])
def test_copy_wrong_shape_is_422(st, body):
    put(st, "a", b"1")
    assert_envelope(send(st, "POST", "/storage/copy", json=body), 422, "UNPROCESSABLE")
    assert list_all(st) == ["a"]


def test_copy_refuses_non_json_content_type(st):
    put(st, "a", b"1")
    r = send(st, "POST", "/storage/copy", data=json.dumps({"from": "a", "to": "b"}),
             headers={"Content-Type": "text/plain"})
    assert_envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert list_all(st) == ["a"]


# --- batch delete ----------------------------------------------------------------------------

def test_delete_batch(st):
    put_many(st, ["a", "b", "c/d", "keep"])
    r = send(st, "POST", "/storage/delete/batch", json={"paths": ["a", "missing", "c/d", "b"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["deleted"]) == ["a", "b", "c/d"]
    assert body["missing"] == ["missing"]
    assert list_all(st) == ["keep"]
    r = send(st, "POST", "/storage/delete/batch", json={"paths": []})
    assert r.status_code == 200 and r.json() == {"deleted": [], "missing": []}


def test_delete_batch_limits_and_shapes(st):
    put_many(st, ["p0", "p1"])
    paths = [f"p{i}" for i in range(1001)]
    assert_envelope(send(st, "POST", "/storage/delete/batch", json={"paths": paths}), 422, "UNPROCESSABLE")
    assert list_all(st) == ["p0", "p1"]
    for body in ({"paths": "p0"}, {"paths": [1]}, {"path": ["p0"]}, ["p0"]):
        assert_envelope(send(st, "POST", "/storage/delete/batch", json=body), 422, "UNPROCESSABLE")
    r = send(st, "POST", "/storage/delete/batch", data=b'{"paths": [', headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "BAD_REQUEST")
    assert list_all(st) == ["p0", "p1"]
    r = send(st, "POST", "/storage/delete/batch", json={"paths": paths[:1000]})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["deleted"]) == ["p0", "p1"] and len(r.json()["missing"]) == 998
    assert list_all(st) == []


# --- presigned URLs --------------------------------------------------------------------------

def presign(m, path, method="GET", expires=None):
    body = {"method": method}
    if expires is not None:
        body["expires"] = expires
    r = send(m, "POST", "/storage/presign/" + enc(path), json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert {"url", "expires_at"} <= set(out), out
    parts = urllib.parse.urlsplit(out["url"])
    assert not parts.scheme and not parts.netloc, out["url"]
    assert parts.path.startswith("/storage/object/")
    assert urllib.parse.unquote(parts.path[len("/storage/object/"):]) == path
    q = urllib.parse.parse_qs(parts.query)
    assert q["X-Mikcar-Method"] == [method]
    assert re.fullmatch(r"[0-9a-f]+", q["X-Mikcar-Signature"][0])
    expires_at = rfc3339(out["expires_at"])
    assert abs(expires_at.timestamp() - int(q["X-Mikcar-Expires"][0])) < 1
    return out["url"], int(q["X-Mikcar-Expires"][0])


def with_param(url, name, value):
    new, n = re.subn(rf"([?&]){re.escape(name)}=[^&]*", rf"\g<1>{name}={value}", url)
    assert n == 1, url
    return new


def test_presigned_get(st):
    put(st, "pics/cat 1.png", b"meow", headers={"Content-Type": "image/png"})
    put(st, "pics/dog.png", b"woof")
    url, expires = presign(st, "pics/cat 1.png", "GET", 120)
    assert abs(expires - (time.time() + 120)) < 5
    r = anon(st, "GET", url)
    assert r.status_code == 200, r.text
    assert (r.content, r.headers["Content-Type"]) == (b"meow", "image/png")
    assert anon(st, "GET", url, headers={"Range": "bytes=1-2"}).content == b"eo"
    # Only this method on this object.
    assert_envelope(anon(st, "PUT", url, data=b"hijack"), 403, "FORBIDDEN")
    other = url.replace(enc("pics/cat 1.png"), enc("pics/dog.png"), 1).replace("cat%201.png", "dog.png", 1)
    assert "dog.png" in other
    assert_envelope(anon(st, "GET", other), 403, "FORBIDDEN")
    assert_envelope(anon(st, "DELETE", url), 403, "FORBIDDEN")
    assert fetch(st, "pics/cat 1.png") == b"meow"


def test_presigned_put(st):
    url, _ = presign(st, "uploads/ä b?#.bin", "PUT", 60)
    r = anon(st, "PUT", url, data=b"uploaded", headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == md5_etag(b"uploaded")
    g = get(st, "uploads/ä b?#.bin")
    assert (g.content, g.headers["Content-Type"]) == (b"uploaded", "text/plain")
    assert_envelope(anon(st, "GET", url), 403, "FORBIDDEN")
    assert list_all(st) == ["uploads/ä b?#.bin"]


def test_presign_default_expiry_is_an_hour(st):
    _, expires = presign(st, "x", "GET")
    assert abs(expires - (time.time() + 3600)) < 5


def test_presigned_url_tampering_is_403(st):
    put(st, "doc", b"secret")
    url, expires = presign(st, "doc", "GET", 600)
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Mikcar-Signature"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for bad in (with_param(url, "X-Mikcar-Signature", flipped),
                with_param(url, "X-Mikcar-Expires", str(expires + 3600)),
                with_param(url, "X-Mikcar-Method", "PUT")):
        r = anon(st, "GET", bad)
        assert_envelope(r, 403, "FORBIDDEN")
        assert b"secret" not in r.content
    put_url = with_param(url, "X-Mikcar-Method", "PUT")
    assert_envelope(anon(st, "PUT", put_url, data=b"overwritten"), 403, "FORBIDDEN")
    assert fetch(st, "doc") == b"secret"


def test_presigned_url_expires(st):
    put(st, "doc", b"data")
    url, expires = presign(st, "doc", "GET", 2)
    assert anon(st, "GET", url).status_code == 200
    time.sleep(max(0.0, expires + 1.2 - time.time()))
    assert_envelope(anon(st, "GET", url), 403, "FORBIDDEN")


def test_no_token_no_signature_is_401(st):
    put(st, "doc", b"data")
    for method in ("GET", "PUT", "DELETE"):
        r = anon(st, method, obj("doc"), data=b"x" if method == "PUT" else None)
        assert_envelope(r, 401, "UNAUTHORIZED")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_envelope(anon(st, "POST", "/storage/presign/doc", json={"method": "GET"}), 401, "UNAUTHORIZED")
    assert fetch(st, "doc") == b"data"


@pytest.mark.parametrize("body", [{"method": "DELETE"}, {"method": "HEAD"}, {"method": 1}, {"method": "GET", "expires": 0},
                                  {"method": "GET", "expires": -5}, {"method": "PUT", "expires": 604801},
                                  {"method": "GET", "expires": "60"}, {"method": "GET", "expires": 1.5}, ["GET"]])
def test_presign_bad_input_is_422(st, body):
    assert_envelope(send(st, "POST", "/storage/presign/doc", json=body), 422, "UNPROCESSABLE")


def test_presign_expiry_bounds_accepted(st):
    presign(st, "doc", "GET", 1)
    _, expires = presign(st, "doc", "PUT", 604800)
    assert abs(expires - (time.time() + 604800)) < 5
    r = send(st, "POST", "/storage/presign/doc", data=b"{", headers={"Content-Type": "application/json"})
    assert_envelope(r, 400, "BAD_REQUEST")


def test_presign_key_is_kept_in_data_dir_across_restarts(launch, tmp_path):
    m = launch()
    url, _ = presign(m, "later", "PUT", 600)
    assert os.path.isfile(tmp_path / "data" / "presign.key")
    m.stop()
    again = launch()
    assert anon(again, "PUT", url, data=b"after restart").status_code == 201
    assert fetch(again, "later") == b"after restart"


def test_presign_secret_option_and_env(launch, tmp_path):
    a = launch(["--presign-secret", "s3cr3t-one"], data_dir=tmp_path / "a", root=tmp_path / "oa")
    b = launch(env={"MIKCAR_PRESIGN_SECRET": "s3cr3t-one"}, data_dir=tmp_path / "b", root=tmp_path / "ob")
    c = launch(["--presign-secret", "another"], data_dir=tmp_path / "c", root=tmp_path / "oc")
    url, _ = presign(a, "shared", "PUT", 600)
    assert anon(b, "PUT", url, data=b"via b").status_code == 201
    assert fetch(b, "shared") == b"via b"
    assert_envelope(anon(c, "PUT", url, data=b"via c"), 403, "FORBIDDEN")
    assert absent(c, "shared")


# --- limits, auth, routing -------------------------------------------------------------------

@pytest.fixture
def small(launch):
    return launch(["--max-object-size", "1KiB"])


def test_max_object_size_content_length(small):
    put(small, "fits", b"x" * 1024)
    assert_envelope(send(small, "PUT", obj("big"), data=b"x" * 1025), 413, "PAYLOAD_TOO_LARGE")
    assert absent(small, "big")
    assert_envelope(send(small, "PUT", obj("fits"), data=b"y" * 5000), 413, "PAYLOAD_TOO_LARGE")
    assert fetch(small, "fits") == b"x" * 1024
    assert list_all(small) == ["fits"]


@pytest.mark.parametrize("expect", [False, True])
def test_max_object_size_answers_before_the_body(small, expect):
    c = Raw(small)
    try:
        headers = {"Content-Length": 10 ** 9, **({"Expect": "100-continue"} if expect else {})}
        c.head("PUT", obj("huge"), headers)  # no body byte is ever sent
        assert_envelope(c.response(timeout=3), 413, "PAYLOAD_TOO_LARGE")
    finally:
        c.close()
    assert absent(small, "huge")


def test_max_object_size_chunked(small):
    c = Raw(small)
    try:
        c.head("PUT", obj("chunky"), {"Transfer-Encoding": "chunked"})
        c.send(b"".join(b"200\r\n" + bytes([65 + i]) * 512 + b"\r\n" for i in range(4)) + b"0\r\n\r\n")
        assert_envelope(c.response(timeout=5), 413, "PAYLOAD_TOO_LARGE")
    finally:
        c.close()
    assert absent(small, "chunky")
    assert list_all(small) == []
    # At the limit, chunked is fine.
    r = send(small, "PUT", obj("chunky"), data=iter([b"a" * 512, b"b" * 512]))
    assert r.status_code == 201, r.text
    assert fetch(small, "chunky") == b"a" * 512 + b"b" * 512


def test_max_object_size_applies_to_presigned_puts(small):
    url, _ = presign(small, "up", "PUT", 60)
    assert_envelope(anon(small, "PUT", url, data=b"x" * 2048), 413, "PAYLOAD_TOO_LARGE")
    assert absent(small, "up")
    assert anon(small, "PUT", url, data=b"x" * 1024).status_code == 201


def test_max_object_size_from_env(launch):
    m = launch(env={"MIKCAR_MAX_OBJECT_SIZE": "2KiB"})
    put(m, "ok", b"z" * 2048)
    assert_envelope(send(m, "PUT", obj("no"), data=b"z" * 2049), 413, "PAYLOAD_TOO_LARGE")
    assert absent(m, "no")


def test_method_not_allowed_and_unknown_routes(st):
    r = send(st, "POST", obj("x"), data=b"x")
    assert_envelope(r, 405, "METHOD_NOT_ALLOWED")
    assert {"GET", "PUT", "DELETE"} <= {a.strip() for a in r.headers["Allow"].split(",")}
    assert_envelope(send(st, "GET", "/storage/nothing-here"), 404, "NOT_FOUND")
    assert_envelope(send(st, "GET", "/storage/copy"), 405, "METHOD_NOT_ALLOWED")
    assert list_all(st) == []


# --- concurrency -----------------------------------------------------------------------------

def test_concurrent_readers_never_see_torn_objects(st):
    bodies = [os.urandom(MIB), os.urandom(MIB)]
    etags = {md5_etag(b): b for b in bodies}
    put(st, "hot", bodies[0])
    stop, errors, reads = threading.Event(), [], []

    def session():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {st.token}"
        return s

    def writer(w):
        s, i = session(), w
        while not stop.is_set():
            r = send(st, "PUT", obj("hot"), session=s, data=bodies[i % 2])
            if r.status_code != 201:
                errors.append(f"PUT {r.status_code} {r.text}")
                return
            i += 1

    def reader():
        s = session()
        for _ in range(25):
            r = send(st, "GET", obj("hot"), session=s)
            if r.status_code != 200:
                errors.append(f"GET {r.status_code} {r.text}")
                return
            if r.content not in bodies:
                errors.append(f"torn read: {len(r.content)} bytes, matches neither body")
            elif etags.get(r.headers.get("ETag")) != r.content:
                errors.append(f"ETag {r.headers.get('ETag')} does not belong to the body read")
            reads.append(bodies.index(r.content) if r.content in bodies else -1)

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in writers + readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    for t in writers:
        t.join()
    assert not errors, errors[:5]
    assert len(reads) == 100


# --- file:// only ----------------------------------------------------------------------------

def test_file_root_is_created_and_objects_stay_inside(start_mikcar, tmp_path):
    root = tmp_path / "not" / "yet" / "objects"
    os.makedirs(tmp_path / "data")
    m = start_mikcar(["--storage"], env={"STORAGE_URL": f"file://{root}"}, data_dir=str(tmp_path / "data"))
    put(m, "a/b/c.txt", b"inside")
    assert root.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["data", "not"]
    assert fetch(m, "a/b/c.txt") == b"inside"


def test_file_objects_survive_restart(fst):
    m = fst()
    etag = put(m, "keep/me.json", b'{"a": 1}', headers={"Content-Type": "application/json", "X-Meta-V": "7"})
    put(m, "x", b"1")
    put(m, "x/y", b"2")
    m.stop()
    m = fst()
    r = get(m, "keep/me.json")
    assert (r.status_code, r.content, r.headers["ETag"]) == (200, b'{"a": 1}', etag)
    assert r.headers["Content-Type"] == "application/json"
    assert meta_headers(r) == {"x-meta-v": "7"}
    assert list_all(m) == ["keep/me.json", "x", "x/y"]


def test_file_symlinks_are_never_followed(fst, tmp_path):
    m = fst()
    put(m, "real/file", b"fine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOP SECRET")
    os.symlink(outside, os.path.join(m.root, "dirlink"))
    os.symlink(outside / "secret.txt", os.path.join(m.root, "filelink"))
    os.makedirs(os.path.join(m.root, "real"), exist_ok=True)
    os.symlink(outside, os.path.join(m.root, "real", "sublink"))

    for path in ("dirlink/secret.txt", "filelink", "real/sublink/secret.txt"):
        r = get(m, path)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert b"TOP SECRET" not in r.content
        assert head(m, path).status_code in (403, 404), path
        r = send(m, "POST", "/storage/copy", json={"from": path, "to": "stolen"})
        assert r.status_code in (403, 404), (path, r.status_code)
        assert absent(m, "stolen")
        r = send(m, "POST", "/storage/presign/" + enc(path), json={"method": "GET"})
        if r.status_code == 200:
            r = anon(m, "GET", r.json()["url"])
        assert r.status_code in (403, 404), (path, r.status_code)
        assert b"TOP SECRET" not in r.content

    listed = list_all(m) + list_all(m, "dirlink") + list_all(m, "real")
    assert not [k for k in listed if "secret" in k], listed

    # Writes and deletes through the links never touch the outside.
    for path in ("dirlink/new.txt", "filelink", "real/sublink/secret.txt", "dirlink/secret.txt"):
        send(m, "PUT", obj(path), data=b"pwned")
        send(m, "DELETE", obj(path))
    send(m, "POST", "/storage/copy", json={"from": "real/file", "to": "filelink"})
    send(m, "POST", "/storage/copy", json={"from": "real/file", "to": "dirlink/copied"})
    send(m, "POST", "/storage/delete/batch", json={"paths": ["filelink", "dirlink/secret.txt"]})
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"TOP SECRET"
    assert fetch(m, "real/file") == b"fine"


def test_file_traversal_prefixes_do_not_list_outside_the_root(fst):
    m = fst()
    put(m, "inside", b"1")
    for raw in ("..", "%2E%2E", "..%2F..", "%2E%2E/data", "a/../..", "%2Fetc"):
        for query in ("", "?prefix_mode=string", "?delimiter=/"):
            r = send(m, "GET", "/storage/list/" + raw + query)
            assert r.status_code in (200, 400), (raw, query, r.status_code)
            if r.status_code == 200:
                body = r.json()
                assert body["objects"] == [] and body.get("common_prefixes", []) == [], (raw, query, body)
            else:
                assert_envelope(r, 400, "BAD_REQUEST")


def test_file_crash_mid_upload_leaves_old_object_and_acked_put_survives(fst):
    m = fst()
    put(m, "keep", b"OLD VERSION")
    conns = []
    for path in ("keep", "new/dir/fresh"):
        c = Raw(m)
        c.head("PUT", obj(path), {"Transfer-Encoding": "chunked", "Content-Type": "text/plain"})
        conns.append(c)
    for _ in range(24):  # 3 MiB into each upload, slowly, never finished
        for c in conns:
            c.send(b"20000\r\n" + b"P" * 0x20000 + b"\r\n")
        time.sleep(0.03)
    acked = os.urandom(300 * 1024)
    etag = put(m, "acked/last", acked)
    # While the uploads are in flight nothing of them is visible.
    assert fetch(m, "keep") == b"OLD VERSION"
    assert absent(m, "new/dir/fresh")
    assert list_all(m) == ["acked/last", "keep"]
    assert list_page(m, delimiter="/")["common_prefixes"] == ["acked/"]
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait()
    for c in conns:
        c.close()

    m = fst()
    r = get(m, "keep")
    assert (r.status_code, r.content) == (200, b"OLD VERSION")
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert absent(m, "new/dir/fresh")
    r = get(m, "acked/last")
    assert (r.status_code, r.headers["ETag"]) == (200, etag)
    assert r.content == acked
    assert list_all(m) == ["acked/last", "keep"]
    page = list_page(m, delimiter="/")
    assert page["common_prefixes"] == ["acked/"]
    assert list_all(m, "new") == []
    # The interrupted path is usable again.
    put(m, "new/dir/fresh", b"second try")
    assert fetch(m, "new/dir/fresh") == b"second try"


# --- streaming memory (file://, 1 GiB each way) ------------------------------------------------

BIG_MIB = 1024
BIG_LIMIT_MIB = 64


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class RssPeak:
    """Samples a process's RSS every 50 ms while in the `with` block."""

    def __init__(self, pid):
        self.pid, self.stop = pid, threading.Event()

    def __enter__(self):
        self.base = self.peak = rss_kib(self.pid)
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth_mib(self):
        return (self.peak - self.base) / 1024


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("big")
    m = Mikcar(["--storage"], env={"STORAGE_URL": f"file://{base}/objects"}, data_dir=str(base))
    m.big = {}
    yield m
    m.stop()
    shutil.rmtree(base / "objects", ignore_errors=True)


def upload_big(m, path):
    block = os.urandom(MIB)
    digest = hashlib.md5()

    def body():
        for i in range(BIG_MIB):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            yield chunk

    r = send(m, "PUT", obj(path), data=body(), timeout=(5, 300))
    assert r.status_code == 201, r.text
    assert r.headers["ETag"] == '"%s"' % digest.hexdigest()
    m.big[path] = r.headers["ETag"]


def test_upload_1gib_streams_in_bounded_memory(big_store):
    m = big_store
    put(m, "warmup", os.urandom(8 * MIB))
    fetch(m, "warmup")
    with RssPeak(m.proc.pid) as rss:
        upload_big(m, "big.bin")
    print(f"upload: RSS {rss.base // 1024} MiB -> peak {rss.peak // 1024} MiB")
    assert rss.growth_mib < BIG_LIMIT_MIB, f"RSS grew by {rss.growth_mib:.0f} MiB during a {BIG_MIB} MiB upload"
    r = head(m, "big.bin")
    assert r.headers["x-object-size"] == str(BIG_MIB * MIB)


def test_download_1gib_streams_in_bounded_memory(big_store):
    m = big_store
    if "big.bin" not in m.big:
        upload_big(m, "big.bin")
    digest, size = hashlib.md5(), 0
    with RssPeak(m.proc.pid) as rss:
        r = send(m, "GET", obj("big.bin"), headers=IDENTITY, stream=True, timeout=(5, 300))
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(BIG_MIB * MIB)
        for chunk in r.iter_content(MIB):
            digest.update(chunk)
            size += len(chunk)
    assert size == BIG_MIB * MIB
    assert '"%s"' % digest.hexdigest() == r.headers["ETag"] == m.big["big.bin"]
    print(f"download: RSS {rss.base // 1024} MiB -> peak {rss.peak // 1024} MiB")
    assert rss.growth_mib < BIG_LIMIT_MIB, f"RSS grew by {rss.growth_mib:.0f} MiB during a {BIG_MIB} MiB download"
    assert delete(m, "big.bin").status_code == 200


def test_concurrent_puts_and_deletes_in_one_directory(st):
    # Deleting the last object of a directory prunes it while other writers create objects in
    # it, and "d" itself switches between a file and a directory: no request may fail.
    def worker(n):
        statuses = []
        s = requests.Session()
        s.headers.update(st.session.headers)
        for i in range(60):
            key = f"d/e/{n}" if n % 4 else ("d" if i % 2 else "d/e")
            statuses.append(send(st, "PUT", obj(key), session=s, data=b"v").status_code)
            statuses.append(send(st, "DELETE", obj(key), session=s).status_code)
        return statuses
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = [code for codes in pool.map(worker, range(8)) for code in codes]
    # Two workers share "d" and "d/e": a DELETE may find the other's DELETE was first (404).
    assert set(results) <= {200, 201, 404}, sorted(set(results))
    assert results.count(201) == 8 * 60
    # Every PUT is followed by its worker's DELETE, so nothing is left, and no empty directory
    # hides a key.
    assert list_all(st, "") == []


def test_put_under_an_object_while_it_is_deleted(st):
    # In each of eight trees, one worker writes and deletes "fN/e" while another does "fN/e/x":
    # on file:// the PUT of "fN/e/x" often finds "fN/e" a plain file it must turn into a
    # directory, and the DELETE of "fN/e" removes that file and prunes "fN" meanwhile. Each key has
    # one writer, so every PUT is 201 and every DELETE 200.
    def worker(n):
        s = requests.Session()
        s.headers.update(st.session.headers)
        key = f"f{n // 2}/e" + ("/x" if n % 2 else "")
        failed = []
        for _ in range(40):
            for method, want in (("PUT", 201), ("DELETE", 200)):
                r = send(st, method, obj(key), session=s, data=b"v" if method == "PUT" else None)
                if r.status_code != want:
                    failed.append((method, key, r.status_code, r.text))
        return failed
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        failed = [f for fs in pool.map(worker, range(16)) for f in fs]
    assert failed == []
    assert list_all(st, "") == []


def test_presign_signature_cannot_be_moved_to_another_path_and_expiry(st):
    # Signed for the path "a\n9999999999": moving the "\n9999999999" from the path into the expiry
    # must not give a valid URL for "a" that never expires.
    put(st, "a", b"secret")
    signed, _ = presign(st, "a\n9999999999", expires=60)
    url = urllib.parse.urlsplit(signed)
    params = dict(urllib.parse.parse_qsl(url.query))
    forged = dict(params, **{"X-Mikcar-Expires": "9999999999\n" + params["X-Mikcar-Expires"]})
    r = send(st, "GET", obj("a", forged), session=requests.Session())
    assert_envelope(r, 403, "FORBIDDEN")


def test_metrics_count_backend_calls(st):
    """Each storage call on the backend counts under its operation; a missing object is an
    answer, not a failure."""
    from conftest import metrics
    assert send(st, "PUT", obj("m/a.txt"), data=b"hello").status_code == 201
    assert send(st, "GET", obj("m/a.txt")).content == b"hello"
    assert send(st, "GET", obj("m/missing")).status_code == 404
    assert send(st, "DELETE", obj("m/a.txt")).status_code == 200
    calls, errors = {}, 0
    for (name, labels), value in metrics(st).items():
        labels = dict(labels)
        if labels.get("service") != "storage":
            continue
        if name == "mikcar_backend_calls_total":
            assert labels["backend"] == ("memory" if st.backend == "memory" else "file")
            calls[labels["operation"]] = value
        errors += value if name == "mikcar_backend_errors_total" else 0
    assert calls["put"] == 1 and calls["get"] == 2 and calls["delete"] == 1, calls
    assert errors == 0
