"""Black-box tests of the HTTP core and the command line (SPEC §1, §2, §11).

Everything here speaks to the real binary: requests where it can express the case, raw sockets
where it cannot (malformed requests, slow clients, pipelining, 100-continue, Unix sockets).
"""
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from conftest import BIN, TOKEN, Mikcar, assert_envelope, metrics

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT")  # spdlog text lines start with a timestamp
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---------------------------------------------------------------------------------------------
# Helpers

class RawResponse:
    """Just enough of requests.Response for assert_envelope."""

    def __init__(self, status_line, status_code, headers, content):
        self.status_line = status_line
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class Raw:
    """One client connection (TCP port or Unix socket path) that reads HTTP/1.1 responses."""

    def __init__(self, target, timeout=5.0):
        if isinstance(target, int):
            self.sock = socket.create_connection(("127.0.0.1", target), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(target)
        self.timeout = timeout
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"mikcar closed the connection; unread bytes: {self.buf!r}")
        self.buf += data

    def response(self, head=False, timeout=None):
        self.sock.settimeout(timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status_line = lines[0]
        status = int(status_line.split(" ")[1])
        headers = CaseInsensitiveDict()
        for line in lines[1:]:
            name, value = line.split(":", 1)
            name, value = name.strip(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if head or 100 <= status < 200 or status in (204, 304):
            length = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        else:
            raise AssertionError(f"response without Content-Length: {status_line} {dict(headers)}")
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return RawResponse(status_line, status, headers, body)

    def closed_by_peer(self, timeout=2.0):
        """True when mikcar has closed the connection (EOF or reset) and sent nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if data:
            self.buf += data
            return False
        return True

    def close(self):
        self.sock.close()


def http(method, path, headers=None, body=None, token=TOKEN, version="HTTP/1.1"):
    """The bytes of one request; Content-Length is added when body is given."""
    lines = [f"{method} {path} {version}", "Host: mikcar"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def roundtrip(target, data, **kw):
    c = Raw(target)
    try:
        c.send(data)
        return c.response(**kw)
    finally:
        c.close()


def clean_env(extra=None, data_dir=None):
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_URL") and not k.startswith("MIKCAR_")
           and k not in ("SIDECAR_TOKEN", "AUTH_TOKEN", "PORT", "HOST")}
    env["MIKCAR_DATA_DIR"] = data_dir or tempfile.mkdtemp(prefix="mikcar-e2e-")
    env.update(extra or {})
    return env


def run(args, env=None, timeout=5):
    """Run mikcar to completion (startup errors, --version…)."""
    try:
        return subprocess.run([BIN] + args, env=clean_env(env), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mikcar {' '.join(args)} kept running instead of exiting; output: {e.stderr!r}")


def startup_error_line(result):
    """The one non-log line mikcar printed on stderr before exiting."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, f"expected exactly one error line, got: {result.stderr!r}"
    assert result.stderr.rstrip("\n").splitlines()[-1] == lines[0], "the error line must be the last line"
    return lines[0]


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def kv_url():
    return {"KV_URL": "memory://"}


@pytest.fixture(scope="module")
def core():
    """One shared mikcar --kv (memory://, test token, defaults) for tests that do not need flags."""
    m = Mikcar(["--kv"], env=kv_url())
    yield m
    m.stop()


@pytest.fixture
def spawn(tmp_path):
    """Start mikcar without waiting for a TCP port (Unix-socket-only listeners)."""
    procs = []

    def start(args, env=None):
        log_path = tmp_path / f"spawn{len(procs)}.log"
        log = open(log_path, "w+")
        proc = subprocess.Popen([BIN] + args, env=clean_env(env, str(tmp_path)), stdout=log,
                                stderr=subprocess.STDOUT)
        proc.log_path = log_path
        procs.append((proc, log))
        return proc

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


# ---------------------------------------------------------------------------------------------
# Health, readiness, metrics

def test_health_get_and_head_need_no_token(core):
    r = requests.get(core.url("/health"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"status": "healthy"}
    h = requests.head(core.url("/health"))
    assert h.status_code == 200
    assert h.content == b""
    assert int(h.headers["content-length"]) == len(r.content)


def test_ready_without_token_gives_only_status(core):
    r = requests.get(core.url("/health/ready"))
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}
    # An invalid token does not unlock the details either.
    r = requests.get(core.url("/health/ready"), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_ready_with_token_adds_service_details(core):
    r = core.get("/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    kv = body["services"]["kv"]
    assert kv["status"] == "up"
    assert kv["backend"] == "memory"
    assert isinstance(kv["latency_ms"], (int, float)) and kv["latency_ms"] >= 0


def test_metrics_need_the_token(core):
    r = requests.get(core.url("/metrics"))
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == "Bearer"


def test_metrics_prometheus_text(core):
    assert requests.get(core.url("/health")).status_code == 200
    r = core.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    counters = re.findall(r'^mikcar_http_requests_total\{([^}]*)\} (\d+)$', text, re.M)
    assert any('route="/health"' in labels and 'status="200"' in labels and int(n) >= 1
               for labels, n in counters), text
    rss = re.search(r"^process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+?\d+)?)$", text, re.M)
    assert rss and float(rss.group(1)) > 1024 * 1024, text
    cpu = re.search(r"^process_cpu_seconds_total ([0-9.e+-]+)$", text, re.M)
    assert cpu and 0 < float(cpu.group(1)) < 60, text
    started = re.search(r"^process_start_time_seconds ([0-9.e+-]+)$", text, re.M)
    assert started and abs(float(started.group(1)) - time.time()) < 600, text
    # The whole exposition parses (each family once) and has the kv backend's calls.
    core.get("/kv/get/absent")
    parsed = metrics(core)
    assert parsed[("mikcar_backend_calls_total",
                   frozenset({"service": "kv", "backend": "memory", "operation": "get"}.items()))] >= 1
    assert parsed[("mikcar_backend_call_duration_seconds_count",
                   frozenset({"service": "kv", "backend": "memory", "operation": "get"}.items()))] >= 1


def test_metrics_count_requests_refused_before_routing(core):
    def refused(status):
        text = core.get("/metrics").text
        found = re.findall(r'^mikcar_http_requests_total\{([^}]*)\} (\d+)$', text, re.M)
        return sum(int(n) for labels, n in found
                   if 'route="unmatched"' in labels and f'status="{status}"' in labels)
    before = refused(400)
    assert_envelope(roundtrip(core.port, b"GARBAGE\r\n\r\n"), 400, "BAD_REQUEST")
    assert refused(400) == before + 1


def test_metrics_count_a_401_under_the_route_it_was_for(core):
    def count():
        text = core.get("/metrics").text
        found = re.findall(r'^mikcar_http_requests_total\{(.*)\} (\d+)$', text, re.M)
        return sum(int(n) for labels, n in found
                   if 'route="/kv/get/{key}"' in labels and 'status="401"' in labels)
    before = count()
    assert_envelope(requests.get(core.url("/kv/get/x")), 401, "UNAUTHORIZED")
    assert count() == before + 1


def test_sighup_does_not_stop_the_server(start_mikcar):
    m = start_mikcar(["--kv"], env=kv_url())
    m.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert m.proc.poll() is None, "SIGHUP killed mikcar"
    assert requests.get(m.url("/health")).status_code == 200
    assert "SIGHUP" in m.output()
    assert m.stop() == 0


def test_metrics_public_flag(start_mikcar):
    m = start_mikcar(["--kv", "--metrics-public"], env=kv_url())
    r = requests.get(m.url("/metrics"))
    assert r.status_code == 200 and "mikcar_http_requests_total" in r.text


# ---------------------------------------------------------------------------------------------
# Authentication

@pytest.mark.parametrize("authorization", [
    None,                          # missing header
    "Basic dGVzdDp0ZXN0LXRva2Vu",  # wrong scheme
    "Bearer ",                     # empty token
    "Bearer",                      # no token at all
    "Bearer wrong-token",          # wrong token
    f"Bearer {TOKEN}x",            # a prefix of the presented value is not enough
    f"Basic {TOKEN}",              # right secret, wrong scheme
])
def test_unauthorized_envelope(core, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = requests.get(core.url("/kv/get/some-key"), headers=headers)
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == "Bearer"


def test_bearer_scheme_is_case_insensitive(core):
    r = requests.get(core.url("/kv/exists/some-key"), headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200 and r.json() == {"exists": False}


# ---------------------------------------------------------------------------------------------
# Routing errors

@pytest.mark.parametrize("path", ["/nope", "/kv/unknown/x", "/health/", "/kv"])
def test_not_found_envelope(core, path):
    assert_envelope(core.get(path), 404, "NOT_FOUND")


def test_method_not_allowed_envelope_has_allow(core):
    r = core.delete("/kv/get/k")
    assert_envelope(r, 405, "METHOD_NOT_ALLOWED")
    allow = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allow and "DELETE" not in allow
    r = core.put("/health")
    assert_envelope(r, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD"}


@pytest.mark.parametrize("path", ["/kv/get/%zz", "/kv/get/abc%4", "/kv/get/%G1x", "/kv/get/%"])
def test_malformed_percent_escape_in_path_param(core, path):
    r = roundtrip(core.port, http("GET", path))
    assert_envelope(r, 400, "BAD_REQUEST")


def test_percent_decoding_reaches_any_key(core):
    r = core.post("/kv/set/a%2Fb%20c%25", data=b"decoded")
    assert r.status_code == 200 and r.json()["key"] == "a/b c%"
    assert core.get("/kv/get/a%2Fb%20c%25").content == b"decoded"


# ---------------------------------------------------------------------------------------------
# Body limit

@pytest.fixture
def small_body(start_mikcar):
    return start_mikcar(["--kv", "--max-body", "1KiB"], env=kv_url())


def test_body_at_the_limit_is_accepted(small_body):
    value = b"x" * 1024
    assert small_body.post("/kv/set/limit", data=value).status_code == 200
    assert small_body.get("/kv/get/limit").content == value


@pytest.mark.parametrize("length", [1025, 2000, 10 ** 12])
def test_content_length_over_limit_is_413_before_the_body(small_body, length):
    c = Raw(small_body.port)
    # Only the headers: mikcar must answer from Content-Length without waiting for the body.
    c.send(http("POST", "/kv/set/big", headers={"Content-Length": length, "x-trace-id": f"big-{length}"}))
    r = c.response(timeout=3)
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert r.headers["x-trace-id"] == f"big-{length}"
    assert c.closed_by_peer()
    assert small_body.get("/kv/exists/big").json() == {"exists": False}


def test_content_length_over_limit_with_expect_gets_413_not_100(small_body):
    c = Raw(small_body.port)
    c.send(http("POST", "/kv/set/big", headers={"Content-Length": 4096, "Expect": "100-continue"}))
    r = c.response(timeout=3)
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert c.closed_by_peer()


def test_chunked_body_over_limit_is_413_while_streaming(small_body):
    c = Raw(small_body.port)
    c.send(http("POST", "/kv/set/chunky", headers={"Transfer-Encoding": "chunked", "x-trace-id": "chunky"}))
    c.send(b"258\r\n" + b"a" * 600 + b"\r\n")
    time.sleep(0.1)
    c.send(b"258\r\n" + b"b" * 600 + b"\r\n")  # 1200 bytes so far; the last chunk is never sent
    r = c.response(timeout=3)
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert r.headers["x-trace-id"] == "chunky"
    assert c.closed_by_peer()
    assert small_body.get("/kv/exists/chunky").json() == {"exists": False}


def test_early_errors_carry_cors_headers(start_mikcar):
    m = start_mikcar(["--kv", "--max-body", "1KiB", "--cors-origins", "https://a.example"], env=kv_url())
    r = roundtrip(m.port, http("POST", "/kv/set/big", headers={"Content-Length": 5000, "Origin": "https://a.example"}))
    assert_envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert r.headers["access-control-allow-origin"] == "https://a.example"


# ---------------------------------------------------------------------------------------------
# Deadlines

@pytest.fixture
def fast_timeout(start_mikcar):
    return start_mikcar(["--kv", "--timeout", "1s"], env=kv_url())


def test_slow_headers_get_408(fast_timeout):
    c = Raw(fast_timeout.port)
    start = time.monotonic()
    c.send(b"GET /health HTTP/1.1\r\nHost: mikcar\r\n")
    # Keep trickling header lines: the deadline covers the whole header, not each read.
    c.sock.settimeout(0.25)
    got = b""
    while time.monotonic() - start < 4:
        try:
            c.send(b"X-Slow: yes\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            data = c.sock.recv(65536)
            got += data
            if not data or b"\r\n\r\n" in got:
                break
        except socket.timeout:
            pass
    elapsed = time.monotonic() - start
    c.buf = got
    r = c.response(timeout=3)
    assert_envelope(r, 408, "TIMEOUT")
    assert UUID4.match(r.headers["x-trace-id"])
    assert 0.8 <= elapsed < 2.5, elapsed
    assert c.closed_by_peer()


def test_incomplete_body_gets_408(fast_timeout):
    c = Raw(fast_timeout.port)
    start = time.monotonic()
    c.send(http("POST", "/kv/set/slow", headers={"Content-Length": 10, "x-trace-id": "slow-body"}) + b"12345")
    r = c.response(timeout=4)
    elapsed = time.monotonic() - start
    assert_envelope(r, 408, "TIMEOUT")
    assert r.headers["x-trace-id"] == "slow-body"
    assert 0.8 <= elapsed < 2.5, elapsed
    assert c.closed_by_peer()
    assert fast_timeout.get("/kv/exists/slow").json() == {"exists": False}


# ---------------------------------------------------------------------------------------------
# Malformed HTTP

@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello on the plain port
    b"GET /health HTTP/1.1\r\nHost: mikcar\r\nBad Header Without Colon\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: mikcar\r\nBad\x01Name: x\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nContent-Length: abc\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nContent-Length: -5\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"GET http://example.com/health HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: mikcar\r\n\r\n",
    b"GET health HTTP/1.1\r\nHost: mikcar\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nAuthorization: Bearer test-token\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",  # bad chunk size
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc",
    b"POST /kv/set/k HTTP/1.1\r\nHost: mikcar\r\nTransfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
], ids=["garbage", "tls", "header-no-colon", "header-ctl", "cl-letters", "cl-negative", "cl-twice",
        "absolute-form", "asterisk", "relative", "bad-chunk", "cl-and-te", "te-gzip-chunked", "h2-preface",
        "te-empty-and-cl", "te-empty-then-chunked", "no-host", "two-hosts", "host-with-space",
        "http10-two-hosts"])
def test_malformed_request_gets_400_then_close(core, data):
    c = Raw(core.port)
    c.send(data)
    r = c.response(timeout=3)
    assert_envelope(r, 400, "BAD_REQUEST")
    assert UUID4.match(r.headers["x-trace-id"]), "every response carries a trace id"
    assert c.closed_by_peer(), "the connection must close after a malformed request"
    # …and the server is still there.
    assert requests.get(core.url("/health")).status_code == 200


def test_http10_needs_no_host(core):
    r = roundtrip(core.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert r.status_code == 200 and r.json() == {"status": "healthy"}


@pytest.mark.parametrize("lines", [100, 2])
def test_request_head_over_64_kib_is_400(core, lines):
    # However the bytes are split (many small lines or a few large ones), the head is 64 KiB.
    value = "v" * (70 * 1024 // lines)
    c = Raw(core.port)
    c.send(http("GET", "/health", headers={f"x-pad-{i}": value for i in range(lines)}))
    body = assert_envelope(c.response(timeout=3), 400, "BAD_REQUEST")
    assert "64 KiB" in body["error"]
    assert c.closed_by_peer()
    r = roundtrip(core.port, http("GET", "/health", headers={f"x-pad-{i}": "v" * 600 for i in range(100)}))
    assert r.status_code == 200  # 60 KiB is fine


@pytest.mark.parametrize("framing", ["extension", "trailer"])
def test_endless_chunk_extension_or_trailer_is_400_not_memory(core, framing):
    c = Raw(core.port)
    head = http("POST", "/kv/set/framing", headers={"Transfer-Encoding": "chunked"})
    if framing == "extension":
        c.send(head + b"3;ext=")
    else:
        c.send(head + b"3\r\nabc\r\n0\r\n")
    line = (b"v" * 1000) if framing == "extension" else b"x-trailer: " + b"v" * 1000 + b"\r\n"
    try:
        for _ in range(1000):  # 1 MB: far beyond the 64 KiB the server holds
            c.send(line)
    except (BrokenPipeError, ConnectionResetError):
        pass  # mikcar answered and closed while we were still sending
    body = assert_envelope(c.response(timeout=3), 400, "BAD_REQUEST")
    assert "64 KiB" in body["error"]
    assert core.get("/kv/exists/framing").json() == {"exists": False}


def test_blank_lines_before_a_request_are_ignored(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/crlf", body=b"abc") + b"\r\n" + http("GET", "/kv/get/crlf")
           + b"\r\n\r\n" + http("GET", "/health"))
    assert c.response().json() == {"key": "crlf", "status": "ok"}
    assert c.response().content == b"abc"
    assert c.response().json() == {"status": "healthy"}


def test_unknown_transfer_coding_is_refused_not_smuggled(core):
    # Without chunked last, the body length is unknown: the bytes after the header must not be
    # stored as an empty value nor taken as a second request.
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/te-gzip", headers={"Transfer-Encoding": "gzip", "x-trace-id": "te"})
           + http("DELETE", "/kv/del/victim"))
    r = c.response(timeout=3)
    assert_envelope(r, 400, "BAD_REQUEST")
    assert r.headers["x-trace-id"] == "te"
    assert c.closed_by_peer()
    assert core.get("/kv/exists/te-gzip").json() == {"exists": False}


# ---------------------------------------------------------------------------------------------
# Connection handling

def test_keep_alive_serves_several_requests_on_one_connection(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/ka", body=b"one"))
    r1 = c.response()
    c.send(http("GET", "/kv/get/ka"))
    r2 = c.response()
    c.send(http("GET", "/health", token=None))
    r3 = c.response()
    assert [r1.status_code, r2.status_code, r3.status_code] == [200, 200, 200]
    assert r2.content == b"one"
    for r in (r1, r2, r3):
        assert r.headers.get("connection", "").lower() != "close"
    assert not c.closed_by_peer(timeout=0.2)


def test_http10_without_keep_alive_closes(core):
    c = Raw(core.port)
    c.send(b"GET /health HTTP/1.0\r\n\r\n")
    r = c.response()
    assert r.status_code == 200 and r.json() == {"status": "healthy"}
    assert c.closed_by_peer()


def test_pipelining_answers_in_order(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/pipe", headers={"x-trace-id": "p1"}, body=b"piped")
           + http("GET", "/kv/get/pipe", headers={"x-trace-id": "p2"})
           + http("GET", "/kv/get/pipe-missing", headers={"x-trace-id": "p3"}))
    r1, r2, r3 = c.response(), c.response(), c.response()
    assert [r.headers["x-trace-id"] for r in (r1, r2, r3)] == ["p1", "p2", "p3"]
    assert r1.status_code == 200 and r1.json() == {"key": "pipe", "status": "ok"}
    assert r2.status_code == 200 and r2.content == b"piped"
    assert_envelope(r3, 404, "NOT_FOUND")
    assert not c.closed_by_peer(timeout=0.2)


def test_pipelined_burst(core):
    c = Raw(core.port)
    c.send(b"".join(http("GET", "/health", headers={"x-trace-id": f"burst-{i}"}, token=None) for i in range(200)))
    ids = [c.response().headers["x-trace-id"] for _ in range(200)]
    assert ids == [f"burst-{i}" for i in range(200)]


def test_connection_close_is_honoured(core):
    c = Raw(core.port)
    c.send(http("GET", "/health", headers={"Connection": "close"}, token=None))
    r = c.response()
    assert r.status_code == 200 and r.headers["connection"].lower() == "close"
    assert c.closed_by_peer()


def test_expect_100_continue(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/expect", headers={"Content-Length": 11, "Expect": "100-continue"}))
    interim = c.response(timeout=2)  # before any body byte was sent
    assert interim.status_line == "HTTP/1.1 100 Continue"
    c.send(b"hello world")
    final = c.response()
    assert final.status_code == 200 and final.json() == {"key": "expect", "status": "ok"}
    assert core.get("/kv/get/expect").content == b"hello world"


def test_no_100_continue_for_http10(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/expect10", headers={"Content-Length": 5, "Expect": "100-continue"},
                version="HTTP/1.0"))
    c.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):  # no interim response: an HTTP/1.0 client sends anyway
        c._fill()
    c.send(b"hello")
    r = c.response()
    assert r.status_code == 200 and r.json() == {"key": "expect10", "status": "ok"}


def test_chunked_request_body(core):
    c = Raw(core.port)
    c.send(http("POST", "/kv/set/chunked", headers={"Transfer-Encoding": "chunked"}))
    for piece in (b"hello ", b"chunked ", b"world"):
        c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        time.sleep(0.02)
    c.send(b"0\r\n\r\n")
    r = c.response()
    assert r.status_code == 200 and r.json() == {"key": "chunked", "status": "ok"}
    assert core.get("/kv/get/chunked").content == b"hello chunked world"


# ---------------------------------------------------------------------------------------------
# Trace ids

def test_trace_id_is_echoed(core):
    r = core.get("/health", headers={"x-trace-id": "order-42/abc"})
    assert r.headers["x-trace-id"] == "order-42/abc"
    tid = "t" * 128
    assert core.get("/health", headers={"x-trace-id": tid}).headers["x-trace-id"] == tid


def test_trace_id_generated_when_absent(core):
    a = core.get("/health").headers["x-trace-id"]
    b = core.get("/health").headers["x-trace-id"]
    assert UUID4.match(a) and UUID4.match(b) and a != b


def test_trace_id_on_error_responses(core):
    r = requests.get(core.url("/kv/get/x"), headers={"x-trace-id": "err-1"})
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert r.headers["x-trace-id"] == "err-1"
    r = core.get("/nope", headers={"x-trace-id": "err-2"})
    assert_envelope(r, 404, "NOT_FOUND")
    assert r.headers["x-trace-id"] == "err-2"


def test_trace_id_too_long_is_replaced(core):
    r = core.get("/health", headers={"x-trace-id": "t" * 129})
    assert UUID4.match(r.headers["x-trace-id"])


@pytest.mark.parametrize("value", [b"caf\xc3\xa9", b"tab\there", b"x\x80y"])
def test_trace_id_not_printable_is_replaced(core, value):
    data = b"GET /health HTTP/1.1\r\nHost: mikcar\r\nx-trace-id: " + value + b"\r\n\r\n"
    r = roundtrip(core.port, data)
    assert r.status_code == 200
    assert UUID4.match(r.headers["x-trace-id"]), r.headers["x-trace-id"]


def test_traceparent_trace_id_used_without_x_trace_id(core):
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = core.get("/health", headers={"traceparent": tp})
    assert r.headers["x-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    r = core.get("/health", headers={"traceparent": tp, "x-trace-id": "mine"})
    assert r.headers["x-trace-id"] == "mine"


@pytest.mark.parametrize("tp", [
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    # 31 hex
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   # upper case is invalid
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # all-zero trace-id
    "garbage",
])
def test_invalid_traceparent_gives_uuid(core, tp):
    r = core.get("/health", headers={"traceparent": tp})
    assert UUID4.match(r.headers["x-trace-id"]), r.headers["x-trace-id"]


# ---------------------------------------------------------------------------------------------
# Compression

BIG = b"".join(b"line %05d of a compressible text value stored in mikcar\n" % i for i in range(80))[:4096]


@pytest.fixture(scope="module")
def big_value(core):
    assert len(BIG) == 4096
    assert core.post("/kv/set/gzip-big", data=BIG).status_code == 200
    assert core.post("/kv/set/gzip-small", data=BIG[:200]).status_code == 200
    return BIG


def raw_get(m, path, accept_encoding=None):
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    return roundtrip(m.port, http("GET", path, headers=headers))


def test_gzip_when_accepted_and_large(core, big_value):
    r = raw_get(core, "/kv/get/gzip-big", "gzip, deflate")
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert len(r.content) < len(big_value)
    assert gzip.decompress(r.content) == big_value
    # requests decodes it transparently, as any HTTP client would.
    assert core.get("/kv/get/gzip-big", headers={"Accept-Encoding": "gzip"}).content == big_value


def test_no_gzip_for_small_bodies(core, big_value):
    r = raw_get(core, "/kv/get/gzip-small", "gzip")
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.content == big_value[:200]


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0", "br"])
def test_no_gzip_unless_accepted(core, big_value, accept):
    r = raw_get(core, "/kv/get/gzip-big", accept)
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.content == big_value


def test_no_compression_flag(start_mikcar):
    m = start_mikcar(["--kv", "--no-compression"], env=kv_url())
    assert m.post("/kv/set/big", data=BIG).status_code == 200
    r = raw_get(m, "/kv/get/big", "gzip")
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.content == BIG


# ---------------------------------------------------------------------------------------------
# CORS

def test_cors_off_by_default(core):
    r = requests.get(core.url("/health"), headers={"Origin": "https://app.example"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    r = requests.options(core.url("/kv/set/k"), headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert "access-control-allow-origin" not in r.headers


def test_cors_allowed_origins(start_mikcar):
    m = start_mikcar(["--kv", "--cors-origins", "https://a.example,https://b.example"], env=kv_url())
    r = requests.get(m.url("/health"), headers={"Origin": "https://b.example"})
    assert r.headers["access-control-allow-origin"] == "https://b.example"
    assert "origin" in r.headers["vary"].lower()
    r = requests.get(m.url("/health"), headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # Authenticated calls expose the headers a browser handler needs.
    m.post("/kv/set/c", data=b"v")
    r = m.get("/kv/get/c", headers={"Origin": "https://a.example"})
    assert r.headers["access-control-allow-origin"] == "https://a.example"
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "etag" in exposed and "x-trace-id" in exposed
    # Errors carry the CORS headers too, so browser code can read the envelope.
    r = requests.get(m.url("/kv/get/c"), headers={"Origin": "https://a.example"})
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert r.headers["access-control-allow-origin"] == "https://a.example"


def test_cors_preflight_without_token(start_mikcar):
    m = start_mikcar(["--kv", "--cors-origins", "https://a.example"], env=kv_url())
    r = requests.options(m.url("/kv/set/k"), headers={
        "Origin": "https://a.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == "https://a.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_cors_lets_browsers_send_and_read_object_metadata(start_mikcar, tmp_path):
    m = start_mikcar(["--storage", "--cors-origins", "https://a.example"],
                     env={"STORAGE_URL": f"file://{tmp_path}/objects"})
    r = requests.options(m.url("/storage/object/x"), headers={
        "Origin": "https://a.example", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, x-meta-color, content-md5"})
    assert r.status_code == 204
    allowed = [h.strip() for h in r.headers["access-control-allow-headers"].lower().split(",")]
    assert {"authorization", "x-meta-color", "content-md5"} <= set(allowed)
    assert m.put("/storage/object/x", data=b"v", headers={"x-meta-color": "red"}).status_code == 201
    r = m.get("/storage/object/x", headers={"Origin": "https://a.example"})
    assert r.status_code == 200 and r.headers["x-meta-color"] == "red"
    exposed = [h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")]
    assert "x-meta-color" in exposed and "etag" in exposed


def test_cors_wildcard(start_mikcar):
    m = start_mikcar(["--kv", "--cors-origins", "*"], env=kv_url())
    r = requests.get(m.url("/health"), headers={"Origin": "https://anything.example"})
    assert r.headers["access-control-allow-origin"] == "*"


# ---------------------------------------------------------------------------------------------
# Shutdown

def test_sigterm_lets_in_flight_request_finish(start_mikcar):
    m = start_mikcar(["--kv"], env=kv_url())
    c = Raw(m.port)
    c.send(http("POST", "/kv/set/inflight", headers={"Content-Length": 10}) + b"12345")
    time.sleep(0.2)
    m.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert m.proc.poll() is None, "mikcar exited with a request in flight"
    with pytest.raises(OSError):  # stopped accepting
        socket.create_connection(("127.0.0.1", m.port), timeout=1).close()
    c.send(b"67890")
    r = c.response()
    assert r.status_code == 200 and r.json() == {"key": "inflight", "status": "ok"}
    assert r.headers.get("connection", "").lower() == "close"
    assert m.proc.wait(5) == 0


def test_idle_keep_alive_connections_do_not_delay_shutdown(start_mikcar):
    m = start_mikcar(["--kv"], env=kv_url())
    conns = []
    for _ in range(3):
        c = Raw(m.port)
        c.send(http("GET", "/health", token=None))
        assert c.response().status_code == 200
        conns.append(c)
    conns.append(Raw(m.port))  # connected, never sent a byte
    time.sleep(0.1)
    start = time.monotonic()
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(5) == 0
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"shutdown took {elapsed:.2f}s with idle connections open"
    for c in conns:
        assert c.closed_by_peer(timeout=1)


def test_sigterm_right_after_listening_is_graceful(tmp_path):
    # Orchestrators may stop a sidecar the moment it is up: the signal must never hit the
    # default action (killed by SIGTERM) instead of the graceful path (exit 0).
    codes = []
    for _ in range(20):
        proc = subprocess.Popen([BIN, "--kv", "--port", "0", "--auth-token", TOKEN],
                                env=clean_env(kv_url(), str(tmp_path)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "listening on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        codes.append(proc.wait(5))
        proc.stderr.close()
    assert codes == [0] * 20, codes


# ---------------------------------------------------------------------------------------------
# Listeners and safety defaults

@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_refuses_public_bind_without_token(host):
    r = run(["--kv", "--port", "0", "--host", host], env=kv_url())
    assert r.returncode == 2
    line = startup_error_line(r)
    assert "HOST" in line and host in line


def test_port_in_use_exits_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run(["--kv", "--port", str(port), "--auth-token", TOKEN], env=kv_url())
    assert r.returncode == 2
    line = startup_error_line(r)
    assert "PORT" in line and str(port) in line


def test_public_bind_with_no_auth(start_mikcar):
    m = start_mikcar(["--kv", "--host", "0.0.0.0", "--no-auth"], env=kv_url(), token=None)
    assert requests.get(m.url("/health")).json() == {"status": "healthy"}
    assert requests.get(m.url("/kv/exists/x")).json() == {"exists": False}


def test_public_bind_with_token(start_mikcar):
    m = start_mikcar(["--kv", "--host", "0.0.0.0"], env=kv_url())
    assert_envelope(requests.get(m.url("/kv/exists/x")), 401, "UNAUTHORIZED")
    assert m.get("/kv/exists/x").json() == {"exists": False}


def test_unix_socket_alongside_tcp(start_mikcar, tmp_path):
    path = str(tmp_path / "mikcar.sock")
    m = start_mikcar(["--kv", "--unix-socket", path], env=kv_url())
    assert os.stat(path).st_mode & 0o777 == 0o660
    r = roundtrip(path, http("GET", "/health", token=None))
    assert r.status_code == 200 and r.json() == {"status": "healthy"}
    assert roundtrip(path, http("POST", "/kv/set/u", body=b"over unix")).status_code == 200
    assert roundtrip(path, http("GET", "/kv/get/u")).content == b"over unix"
    assert_envelope(roundtrip(path, http("GET", "/kv/get/u", token=None)), 401, "UNAUTHORIZED")
    assert m.get("/kv/get/u").content == b"over unix"  # same store over TCP


def test_unix_socket_only_runs_without_token(spawn, tmp_path):
    path = str(tmp_path / "only.sock")
    proc = spawn(["--kv", "--no-tcp", "--unix-socket", path], env=kv_url())
    wait_until(lambda: proc.poll() is not None or "listening on unix:" in open(proc.log_path).read(),
               what="the Unix socket listener")
    assert proc.poll() is None, open(proc.log_path).read()
    assert "listening on 127.0.0.1" not in open(proc.log_path).read()
    c = Raw(path)
    c.send(http("POST", "/kv/set/k", body=b"v", token=None))
    assert c.response().status_code == 200
    c.send(http("GET", "/kv/get/k", token=None))
    assert c.response().content == b"v"
    c.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert not os.path.exists(path), "the socket file is removed on shutdown"


def test_unix_socket_never_replaces_a_regular_file(tmp_path):
    path = tmp_path / "precious.txt"
    path.write_text("do not delete")
    r = run(["--kv", "--port", "0", "--unix-socket", str(path)], env=kv_url())
    assert r.returncode == 2
    assert "MIKCAR_UNIX_SOCKET" in startup_error_line(r)
    assert path.read_text() == "do not delete"


def test_unix_socket_never_steals_a_live_listener(start_mikcar, tmp_path):
    path = str(tmp_path / "shared.sock")
    first = start_mikcar(["--kv", "--unix-socket", path], env=kv_url())
    r = run(["--kv", "--port", "0", "--unix-socket", path], env=kv_url())
    assert r.returncode == 2
    assert "MIKCAR_UNIX_SOCKET" in startup_error_line(r)
    assert roundtrip(path, http("GET", "/health", token=None)).status_code == 200
    assert first.proc.poll() is None


def test_unix_socket_replaces_a_stale_socket_file(start_mikcar, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind, as after a crash
    start_mikcar(["--kv", "--unix-socket", path], env=kv_url())
    assert roundtrip(path, http("GET", "/health", token=None)).status_code == 200


def test_unix_socket_path_too_long(tmp_path):
    path = str(tmp_path / ("s" * 120 + ".sock"))
    r = run(["--kv", "--port", "0", "--unix-socket", path], env=kv_url())
    assert r.returncode == 2, r.stderr
    assert "MIKCAR_UNIX_SOCKET" in startup_error_line(r)


# ---------------------------------------------------------------------------------------------
# Command line and startup errors

def kv_backend_rows():
    out = run(["--list-backends"]).stdout
    return [line for line in out.splitlines() if line.startswith("kv ")]


@pytest.mark.parametrize("args,env,words", [
    (["--kv", "--port", "abc"], kv_url(), ["PORT", "abc"]),
    (["--kv", "--port", "70000"], kv_url(), ["PORT", "70000"]),
    (["--kv"], {**kv_url(), "PORT": "http"}, ["PORT", "http"]),
    (["--kv", "--port", "0"], {**kv_url(), "MIKCAR_MAX_BODY": "lots"}, ["MIKCAR_MAX_BODY", "lots"]),
    (["--kv", "--port", "0", "--max-body", "0"], kv_url(), ["MIKCAR_MAX_BODY"]),
    (["--kv", "--port", "0"], {**kv_url(), "MIKCAR_TIMEOUT": "soon"}, ["MIKCAR_TIMEOUT", "soon"]),
    (["--kv", "--port", "0"], {"KV_URL": "nosuch://localhost/x"}, ["KV_URL", "nosuch", "memory://"]),
    (["--kv", "--port", "0"], {"KV_URL": "no-scheme-at-all"}, ["KV_URL"]),
    (["--kv", "--port", "0", "--host", "not-an-address"], kv_url(), ["HOST", "not-an-address"]),
    (["--kv", "--no-tcp"], kv_url(), ["--unix-socket"]),
    (["--kv", "--port", "0", "--log-level", "chatty"], kv_url(), ["chatty"]),
    (["--kv", "--no-such-flag"], kv_url(), ["--no-such-flag"]),
], ids=["port-letters", "port-range", "port-env", "max-body", "max-body-zero", "timeout",
        "unknown-scheme", "no-scheme", "host", "no-tcp-no-socket", "log-level", "unknown-flag"])
def test_startup_errors_exit_2_with_one_line(args, env, words):
    r = run(args, env=env)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = startup_error_line(r)
    for word in words:
        assert word in line, line


# A compiled-out scheme's error naming its CMake option: tests/common/registry_test.cc.


def test_no_service_exits_1_with_hint():
    r = run(["--port", "0"])
    assert r.returncode == 1
    assert "--kv" in r.stderr and "--all" in r.stderr


def test_version():
    r = run(["--version"])
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert re.match(r"^mikcar \d+\.\d+\.\d+", lines[0]), r.stdout
    kv = next(line for line in lines if line.strip().startswith("kv:"))
    assert "memory" in kv
    assert run(["-V"]).stdout == r.stdout


def test_list_backends():
    r = run(["--list-backends"])
    assert r.returncode == 0
    for service in ("storage", "kv", "sql", "queue", "secrets", "email"):
        assert re.search(rf"^{service}\s", r.stdout, re.M), r.stdout
    memory = next(row for row in kv_backend_rows() if "memory://" in row)
    assert "compiled in" in memory
    for scheme in ("file://", "lmdb://", "redis://", "rediss://"):
        assert scheme in r.stdout


def test_credentials_never_logged(start_mikcar):
    m = start_mikcar(["--kv", "--log-level", "debug"],
                     env={"KV_URL": "memory://?password=hunter2&token=tok-s3cr3t"})
    m.get("/kv/get/missing")
    requests.get(m.url("/kv/get/x"), headers={"Authorization": "Bearer wrong-hunter2"})
    assert m.stop() == 0
    log = m.output()
    assert "REDACTED" in log
    assert "hunter2" not in log and "tok-s3cr3t" not in log and TOKEN not in log


def test_credentials_not_in_startup_errors():
    r = run(["--kv", "--port", "0"], env={"KV_URL": "nosuch://user:hunter2@db.example/x?password=hunter3"})
    assert r.returncode == 2
    assert "hunter2" not in r.stderr and "hunter3" not in r.stderr
    assert "KV_URL" in startup_error_line(r)


# ---------------------------------------------------------------------------------------------
# Footprint

def test_idle_rss_under_15_mb(start_mikcar, capsys):
    m = start_mikcar(["--kv"], env=kv_url())
    assert requests.get(m.url("/health")).status_code == 200
    with open(f"/proc/{m.proc.pid}/status") as f:
        rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    with capsys.disabled():
        print(f"\n[mikcar idle RSS: {rss_kb / 1024:.1f} MiB]")
    assert rss_kb < 15 * 1024


def test_startup_to_first_health(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env(kv_url(), str(tmp_path))
    start = time.monotonic()
    proc = subprocess.Popen([BIN, "--kv", "--port", str(port), "--auth-token", TOKEN], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        elapsed = None
        while time.monotonic() - start < 5 and proc.poll() is None:
            try:
                r = roundtrip(port, http("GET", "/health", token=None))
                if r.status_code == 200:
                    elapsed = time.monotonic() - start
                    break
            except OSError:
                time.sleep(0.002)
        assert elapsed is not None, "mikcar never answered /health"
        with capsys.disabled():
            print(f"\n[mikcar startup to first /health: {elapsed * 1000:.1f} ms]")
        assert elapsed < 0.5
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_default_io_threads_are_half_the_cpus_it_may_use(start_mikcar):
    """Without --threads, mikcar runs one I/O thread per two CPUs it may use, at least one:
    pinned to one CPU it runs one, and unpinned it counts the CPUs of its affinity mask, not
    every CPU of the host."""
    def threads(m):
        return len(os.listdir(f"/proc/{m.proc.pid}/task"))

    env = {"KV_URL": "memory://"}
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})  # inherited by the processes started meanwhile
    try:
        pinned = start_mikcar(["--kv"], env=env)
        one = start_mikcar(["--kv", "--threads", "1"], env=env)
        two = start_mikcar(["--kv", "--threads", "2"], env=env)
    finally:
        os.sched_setaffinity(0, saved)
    unpinned = start_mikcar(["--kv"], env=env)
    assert threads(pinned) == threads(one)
    assert threads(two) == threads(one) + 1
    cpus = len(saved)
    try:  # a cgroup v2 CPU limit caps the CPUs mikcar counts, as the affinity mask does
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except OSError:
        pass
    assert threads(unpinned) == threads(one) - 1 + max(1, cpus // 2)
    assert pinned.get("/health").status_code == 200
    assert unpinned.get("/health").status_code == 200
