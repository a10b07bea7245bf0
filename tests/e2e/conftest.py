"""Black-box fixtures: start the built mikcar binary on a free port and talk HTTP to it.

MIKCAR_BIN names the binary (scripts/test.sh sets it). Backend URLs of real servers started by
scripts/test-backends.sh arrive as MIKCAR_TEST_*_URL variables.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import requests

BIN = os.environ.get("MIKCAR_BIN", os.path.join(os.path.dirname(__file__), "../../build/dev/src/mikcar"))
TOKEN = "test-token"


class Mikcar:
    """A running mikcar process."""

    def __init__(self, args, env=None, token=TOKEN, data_dir=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="mikcar-e2e-")
        self.token = token
        full_env = {k: v for k, v in os.environ.items()
                    if not k.endswith("_URL") and k not in ("SIDECAR_TOKEN", "AUTH_TOKEN", "PORT", "HOST")}
        full_env.update({"MIKCAR_DATA_DIR": self.data_dir})
        full_env.update(env or {})
        cmd = [BIN, "--port", "0"] + list(args)
        if token:
            cmd += ["--auth-token", token]
        self.log_path = os.path.join(self.data_dir, "mikcar.log")
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mikcar exited with {self.proc.returncode}: {self.output()}")
            m = re.search(r"listening on [^\s]*:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.01)
        if self.port is None:
            self.stop()
            raise RuntimeError("mikcar did not print its port: " + self.output())
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def url(self, path):
        return self.base + path

    def get(self, path, **kw):
        return self.session.get(self.url(path), **kw)

    def post(self, path, **kw):
        return self.session.post(self.url(path), **kw)

    def put(self, path, **kw):
        return self.session.put(self.url(path), **kw)

    def delete(self, path, **kw):
        return self.session.delete(self.url(path), **kw)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def start_mikcar():
    """Factory: start_mikcar(["--kv"], env={...}) → Mikcar; stopped at teardown."""
    started = []

    def start(args, **kw):
        m = Mikcar(args, **kw)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def mikcar(start_mikcar):
    """mikcar --kv on memory:// with the test token."""
    return start_mikcar(["--kv"], env={"KV_URL": "memory://"})


def assert_envelope(resp, status, code):
    """The SPEC §2.2 error envelope."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"]
    return body


def metrics(m):
    """GET /metrics parsed by prometheus_client (a malformed exposition raises): a dict of
    (sample name, frozenset of label items) -> value. Each family is written once."""
    from prometheus_client.parser import text_string_to_metric_families
    resp = m.get("/metrics")
    assert resp.status_code == 200, resp.text
    families = list(text_string_to_metric_families(resp.text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def metric(m, name, **labels):
    """One sample of /metrics (0 when absent)."""
    return metrics(m).get((name, frozenset(labels.items())), 0)


def kill_9(m):
    """SIGKILL: no chance to flush anything."""
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait()
    m.log.close()


def drain_queue(m, q):
    """Pops `q` until it is empty; the ids in delivery order."""
    ids = []
    while True:
        r = m.get(f"/queue/pop/{q}", params={"timeout": 0}, timeout=10)
        assert r.status_code == 200, r.text
        msg = r.json()["message"]
        if msg is None:
            return ids
        ids.append(msg["id"])


def push_storm_until_kill_9(m, q, workers, seconds):
    """`workers` threads push to `q` until mikcar is killed with SIGKILL after `seconds`; the ids
    of the pushes answered 200, and asserts there were enough to mean something."""
    stop, acked, lock = threading.Event(), [], threading.Lock()

    def storm(worker):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {m.token}"
        i = 0
        while not stop.is_set():
            try:
                r = s.post(f"{m.base}/queue/push/{q}", json={"w": worker, "i": i}, timeout=5)
            except requests.RequestException:
                return  # the server died: this push was never acknowledged
            if r.status_code == 200:
                with lock:
                    acked.append(r.json()["message_id"])
            i += 1

    threads = [threading.Thread(target=storm, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    kill_9(m)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 100, f"storm too small to mean anything: {len(acked)} acknowledged pushes"
    return acked
