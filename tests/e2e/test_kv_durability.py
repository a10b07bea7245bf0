"""kill -9 in the middle of a write storm on the durable file:// (LMDB) backend: every set that
was answered 200 must be there, with its acknowledged value, after a restart."""
import os
import signal
import threading
import time

import requests

from conftest import Mikcar


def storm(base, token, worker, stop, acked):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    i = 0
    while not stop.is_set():
        key, value = f"storm-{worker}-{i}", f"value-{worker}-{i}-" + "x" * (i % 50)
        try:
            r = s.post(f"{base}/kv/set/{key}", data=value, timeout=5)
        except requests.RequestException:
            return  # the server died: this request was never acknowledged
        if r.status_code == 200:
            acked[key] = value
        i += 1


def test_acknowledged_sets_survive_kill_9(tmp_path):
    data_dir = str(tmp_path)
    m = Mikcar(["--kv"], data_dir=data_dir)  # KV_URL unset: the embedded file:// default
    stop, acked, workers = threading.Event(), {}, []
    for w in range(32):
        t = threading.Thread(target=storm, args=(m.base, m.token, w, stop, acked))
        t.start()
        workers.append(t)
    time.sleep(2.0)
    os.kill(m.proc.pid, signal.SIGKILL)  # mid-storm, no chance to flush anything
    m.proc.wait()
    stop.set()
    for t in workers:
        t.join()
    m.log.close()
    assert len(acked) > 100, f"storm too small to mean anything: {len(acked)} acknowledged sets"

    again = Mikcar(["--kv"], data_dir=data_dir)
    try:
        keys = sorted(acked)
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            r = again.post("/kv/get/batch", json={"keys": chunk})
            assert r.status_code == 200, r.text
            got = r.json()
            lost = [k for k in chunk if got[k] != acked[k]]
            assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    finally:
        again.stop()


def test_acknowledged_increments_survive_kill_9(tmp_path):
    data_dir = str(tmp_path)
    m = Mikcar(["--kv"], data_dir=data_dir)
    stop, highest, lock = threading.Event(), [0], threading.Lock()

    def bump():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {m.token}"
        while not stop.is_set():
            try:
                r = s.post(f"{m.base}/kv/increment/counter", timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    highest[0] = max(highest[0], r.json()["value"])

    workers = [threading.Thread(target=bump) for _ in range(16)]
    for t in workers:
        t.start()
    time.sleep(1.0)
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait()
    stop.set()
    for t in workers:
        t.join()
    m.log.close()
    assert highest[0] > 100

    again = Mikcar(["--kv"], data_dir=data_dir)
    try:
        value = int(again.get("/kv/get/counter").text)
        # Every acknowledged increment is durable; at most the in-flight ones may also be there.
        assert highest[0] <= value <= highest[0] + 16
    finally:
        again.stop()
