"""The configuration file (SPEC §1.2) and scoped tokens (SPEC §2.4), black-box.

`mikcar --config FILE` takes every long flag as a key (dashes as underscores), `services`, a table
per service with its `url` (and storage's options), `auth_token`, and `[[tokens]]`. Flags win over
the environment, which wins over the file. A scoped token is refused (403, the envelope) outside
its services, its name prefixes, or its read-only limit, and changes nothing; SIGHUP reloads the
tokens.
"""
import hashlib
import os
import random
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import BIN, assert_envelope

PG_URL = os.environ.get("MIKCAR_TEST_POSTGRES_URL")
J = {"Content-Type": "application/json"}


def fresh(path):
    path.mkdir()
    return str(path)


def write(path, text):
    path.write_text(text)
    return str(path)


def run_config(tmp_path, text, *args, env=None):
    """Runs mikcar with a configuration file that must fail: (exit code, output)."""
    cfg = write(tmp_path / "mikcar.toml", text)
    full_env = {k: v for k, v in os.environ.items()
                if not k.endswith("_URL") and k not in ("SIDECAR_TOKEN", "AUTH_TOKEN")}
    full_env.update({"MIKCAR_DATA_DIR": str(tmp_path / "data")})
    full_env.update(env or {})
    out = subprocess.run([BIN, "--config", cfg, "--port", "0", *args], env=full_env,
                         capture_output=True, text=True, timeout=20)
    return out.returncode, out.stdout + out.stderr


def as_token(m, token):
    """A session of `m` presenting `token`."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    s.base = m.base
    return s


def call(s, method, path, **kw):
    return s.request(method, s.base + path, timeout=10, **kw)


def forbidden(resp, *words):
    body = assert_envelope(resp, 403, "FORBIDDEN")
    for w in words:
        assert w in body["error"], body
    return body


TOKENS = """
[[tokens]]
name = "tenant-a"
token = "tok-a"
services = ["kv", "storage", "queue"]
prefixes = ["a/", "a."]

[[tokens]]
name = "reader"
token_sha256 = "{reader_sha}"
services = ["kv", "storage", "queue", "sql", "metrics"]
read_only = true
""".format(reader_sha=hashlib.sha256(b"tok-r").hexdigest())


@pytest.fixture
def scoped(start_mikcar, tmp_path):
    """mikcar with every service on embedded defaults, the full token and two scoped tokens."""
    cfg = write(tmp_path / "mikcar.toml",
                'services = ["kv", "storage", "queue", "sql"]\n' + TOKENS)
    m = start_mikcar(["--config", cfg], data_dir=fresh(tmp_path / "data"))
    m.a = as_token(m, "tok-a")
    m.r = as_token(m, "tok-r")
    return m


# --- the file -------------------------------------------------------------------------------

def test_file_settings_services_and_urls(start_mikcar, tmp_path):
    cfg = write(tmp_path / "mikcar.toml", """
# every long flag, dashes as underscores
port = 1
max_body = "1KiB"
timeout = "5s"
cors_origins = ["https://a.example", "https://b.example"]
metrics_public = true
no_compression = true
services = ["kv", "storage"]

[kv]
url = "memory://"

[storage]
max_object_size = "2KiB"
""")
    m = start_mikcar(["--config", cfg], data_dir=fresh(tmp_path / "data"))
    assert m.port != 1  # the flag (--port 0) wins over the file
    ready = m.get("/health/ready").json()
    assert set(ready["services"]) == {"kv", "storage"}
    assert ready["services"]["kv"]["backend"] == "memory"
    assert ready["services"]["storage"]["backend"] == "file"  # embedded default
    assert m.post("/kv/set/k", data="x" * 1024).status_code == 200
    assert_envelope(m.post("/kv/set/k", data="x" * 1025), 413, "PAYLOAD_TOO_LARGE")
    assert m.put("/storage/object/f", data=b"x" * 2048).status_code == 201
    assert_envelope(m.put("/storage/object/f", data=b"x" * 2049), 413, "PAYLOAD_TOO_LARGE")
    r = m.get("/health", headers={"Origin": "https://b.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert "kv: memory://" in m.output()
    metrics = requests.get(m.url("/metrics"), headers={"Accept-Encoding": "gzip"})
    assert metrics.status_code == 200  # metrics_public
    assert "content-encoding" not in metrics.headers  # no_compression


def test_environment_wins_over_the_file_and_flags_over_both(start_mikcar, tmp_path):
    cfg = write(tmp_path / "mikcar.toml", """
max_body = "1KiB"
services = ["kv"]
[kv]
url = "file:///nonexistent/never/used"
""")
    m = start_mikcar(["--config", cfg], data_dir=fresh(tmp_path / "d1"),
                     env={"MIKCAR_MAX_BODY": "2KiB", "KV_URL": "memory://"})
    assert m.get("/health/ready").json()["services"]["kv"]["backend"] == "memory"
    assert m.post("/kv/set/k", data="x" * 2048).status_code == 200
    assert_envelope(m.post("/kv/set/k", data="x" * 2049), 413, "PAYLOAD_TOO_LARGE")
    m2 = start_mikcar(["--config", cfg, "--max-body", "3KiB"], data_dir=fresh(tmp_path / "d2"),
                      env={"MIKCAR_MAX_BODY": "2KiB", "KV_URL": "memory://"})
    assert m2.post("/kv/set/k", data="x" * 3072).status_code == 200


def test_auth_token_from_the_file_unless_the_environment_gives_one(start_mikcar, tmp_path):
    cfg = write(tmp_path / "mikcar.toml", 'auth_token = "from-file"\nservices = ["kv"]\n'
                                           '[kv]\nurl = "memory://"\n')
    m = start_mikcar(["--config", cfg], token=None, data_dir=fresh(tmp_path / "d1"))
    assert_envelope(m.get("/kv/get/k"), 401, "UNAUTHORIZED")
    assert m.get("/kv/get/k", headers={"Authorization": "Bearer from-file"}).status_code == 404
    m2 = start_mikcar(["--config", cfg], token=None, data_dir=fresh(tmp_path / "d2"),
                      env={"SIDECAR_TOKEN": "from-env"})
    assert_envelope(m2.get("/kv/get/k", headers={"Authorization": "Bearer from-file"}), 401,
                    "UNAUTHORIZED")
    assert m2.get("/kv/get/k", headers={"Authorization": "Bearer from-env"}).status_code == 404
    assert "from-file" not in m.output() + m2.output()


@pytest.mark.parametrize("text,expected", [
    ("port = \n", "mikcar.toml:1:"),
    ("prot = 3\nservices = [\"kv\"]\n", "mikcar.toml:1: prot: unknown setting"),
    ("services = [\"kv\"]\nmax_body = \"lots\"\n", "mikcar.toml:2: max_body"),
    ("services = [\"kv\"]\nthreads = 5000\n", "mikcar.toml:2: threads: expected a number 0-1024"),
    ("services = [\"kv\"]\nlog_level = \"loud\"\n", "mikcar.toml:2: log_level: expected trace"),
    ("services = [\"kv\"]\nmax_body = 1.5\n", "max_body: expected a string, a number"),
    ("services = [\"kvv\"]\n", "services: unknown service 'kvv'; expected some of storage, kv"),
    ("services = \"kv\"\n", "services: expected a list of strings"),
    ("services = [\"kv\"]\nmax_object_size = \"1KiB\"\n", "belongs in the [storage] table"),
    ("services = [\"kv\"]\n[kv]\nurl = \"memory://\"\nprefix = \"x\"\n",
     "mikcar.toml:4: kv.prefix: unknown key; expected url"),
    ("services = [\"kv\"]\n[kv]\nurl = \"nosuch://x\"\n", "mikcar.toml:3: kv.url = nosuch://x"),
    ("services = [\"kv\"]\n[[tokens]]\nname = \"\"\ntoken = \"t\"\nservices = [\"kv\"]\n",
     "mikcar.toml:3: tokens[0].name: expected a non-empty string"),
    # Unquoted, a token is a number too large for TOML: its digits must not reach the log.
    ("services = [\"kv\"]\n[[tokens]]\ntoken = 123456789012345678901234567890\n",
     "mikcar.toml:3:"),
    ("services = [\"kv\"]\n[elsewhere]\na = 1\n", "elsewhere: unknown table"),
    ("version = true\nservices = [\"kv\"]\n", "version: unknown setting"),
    ("auth-token = \"x\"\nservices = [\"kv\"]\n", "mikcar.toml:1: auth-token: unknown key; settings use _"),
    ("services = [\"kv\"]\n[[tokens]]\ntoken = \"t\"\n", "tokens[0]: expected services"),
    ("services = [\"kv\"]\n[[tokens]]\nname = \"x\"\nservices = [\"kv\"]\n",
     "token 'x': expected exactly one of token and token_sha256"),
    ("services = [\"kv\"]\n[[tokens]]\ntoken_sha256 = \"abc\"\nservices = [\"kv\"]\n",
     "token 'tokens[0]': token_sha256: expected 64 hex digits"),
    ("services = [\"kv\"]\n[[tokens]]\ntoken = \"t\"\nservices = [\"sql\"]\n",
     "services: 'sql' is not mounted; expected some of metrics, kv"),
    ("services = [\"sql\"]\n[[tokens]]\ntoken = \"t\"\nservices = [\"sql\"]\nprefixes = [\"a\"]\n",
     "prefixes cannot confine SQL"),
    ("services = [\"kv\"]\n[[tokens]]\ntoken = \"t\"\nservices = [\"kv\"]\nwrite = false\n",
     "tokens[0].write: unknown key"),
    ("services = [\"kv\"]\n[[tokens]]\ntoken = \"secret-1\"\nservices = [\"kv\"]\n"
     "[[tokens]]\ntoken = \"secret-1\"\nservices = [\"kv\"]\n",
     "token 'tokens[1]': the token is the same as token 'tokens[0]'"),
])
def test_bad_files_stop_start_up_with_one_line(tmp_path, text, expected):
    code, output = run_config(tmp_path, text)
    assert code == 2, output
    assert expected in output, output
    assert "secret-1" not in output and "123456789012" not in output
    assert "Traceback" not in output and "terminate" not in output


def test_mutated_files_stop_with_one_line_and_never_crash(tmp_path):
    """150 random mutations of examples/mikcar.toml (fixed seed): each run ends with exit 2 and
    one line (the bad file, or the bad --port given after it), never a crash."""
    rng = random.Random(10)
    base = open(os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                             "mikcar.toml"), "rb").read()
    pieces = [b"[", b"]]", b"=", b'"', b"\n", b"[[tokens]]\n", b"99999999999999999999", b"{",
              b"\xff\xfe", b"1979-05-27T07:32:00Z", b"services=[]", b"prefixes=[\"\"]", b"inf"]
    path = tmp_path / "fuzz.toml"
    for i in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(data))
            if rng.random() < 0.5:
                data[at:at] = rng.choice(pieces)
            else:
                del data[at:at + rng.randint(1, 12)]
        path.write_bytes(bytes(data))
        out = subprocess.run([BIN, "--config", str(path), "--port", "notaport"],
                             capture_output=True, timeout=20)
        lines = out.stderr.decode(errors="replace").strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("mikcar: "), \
            (i, out.returncode, lines, bytes(data))


def test_missing_file_names_the_path(tmp_path):
    out = subprocess.run([BIN, "--config", str(tmp_path / "none.toml"), "--kv"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert "none.toml: " in out.stderr, out.stderr


def test_a_data_dir_from_the_file_is_named_when_it_cannot_be_made(tmp_path):
    code, output = run_config(tmp_path, 'data_dir = "/proc/no/such"\nservices = ["kv"]\n',
                              env={"MIKCAR_DATA_DIR": ""})
    assert code == 2, output
    assert "mikcar.toml:1: data_dir: cannot create '/proc/no/such'" in output, output


def test_scoped_tokens_alone_turn_auth_on_and_allow_a_public_bind(start_mikcar, tmp_path):
    cfg = write(tmp_path / "mikcar.toml", 'services = ["kv"]\n[kv]\nurl = "memory://"\n' + TOKENS
                .replace('"kv", "storage", "queue", "sql", "metrics"', '"kv"')
                .replace('["kv", "storage", "queue"]', '["kv"]'))
    m = start_mikcar(["--config", cfg, "--host", "0.0.0.0"], token=None,
                     data_dir=fresh(tmp_path / "d"))
    assert_envelope(m.get("/kv/get/a%2Fk"), 401, "UNAUTHORIZED")
    assert call(as_token(m, "tok-a"), "GET", "/kv/get/a%2Fk").status_code == 404
    assert "no auth token set" not in m.output()


def test_the_example_file_runs_as_documented(start_mikcar, tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "mikcar.toml")
    # MIKCAR_DATA_DIR (set by the fixture) wins over the file's data_dir, --port 0 over its port.
    m = start_mikcar(["--config", example], token=None, data_dir=fresh(tmp_path / "d"))
    full, tenant, reporting = (as_token(m, t) for t in ("change-me", "tenant-a-token", "abc123"))
    assert set(call(full, "GET", "/health/ready").json()["services"]) == {"kv", "storage", "queue",
                                                                          "sql"}
    assert call(tenant, "POST", "/kv/set/tenant-a%2Fx", data="1").status_code == 200
    assert call(tenant, "POST", "/queue/push/tenant-a.jobs", json={}).status_code == 200
    forbidden(call(tenant, "GET", "/kv/get/other"))
    assert call(reporting, "GET", "/kv/get/tenant-a%2Fx").content == b"1"
    assert call(reporting, "POST", "/sql/query", json={"sql": "SELECT 1 AS one"}).ok
    assert call(reporting, "GET", "/metrics").status_code == 200
    forbidden(call(reporting, "POST", "/kv/set/x", data="1"), "read-only")
    assert_envelope(m.put("/storage/object/big", data=b"x" * 10), 401, "UNAUTHORIZED")


# --- scoped tokens ----------------------------------------------------------------------------

def test_a_token_calls_only_its_services(scoped):
    forbidden(call(scoped.a, "POST", "/sql/query", json={"sql": "SELECT 1"}),
              "token 'tenant-a' may only call kv, storage, queue; not sql")
    forbidden(call(scoped.a, "GET", "/metrics"), "not metrics")
    assert call(scoped.r, "GET", "/metrics").status_code == 200
    assert call(scoped.a, "GET", "/health").status_code == 200
    assert call(scoped.a, "GET", "/openapi.json").status_code == 200
    ready = call(scoped.a, "GET", "/health/ready").json()
    assert ready["status"] == "ready" and "services" not in ready  # only the full token sees them
    assert "services" in scoped.get("/health/ready").json()
    # A wrong token is still a 401, an unknown route still a 404.
    assert_envelope(call(as_token(scoped, "tok-x"), "GET", "/kv/get/a%2Fk"), 401, "UNAUTHORIZED")
    assert_envelope(call(scoped.a, "GET", "/kv/nope"), 404, "NOT_FOUND")
    # The full token is unlimited.
    assert scoped.post("/sql/query", json={"sql": "SELECT 1"}).status_code == 200


def test_a_scope_ends_with_its_request_on_a_kept_alive_connection(scoped):
    s = requests.Session()  # one connection, three tokens in turn
    assert scoped.post("/kv/set/b%2Fk", data="theirs").status_code == 200
    for token, path, status in [("tok-a", "/kv/get/b%2Fk", 403), ("test-token", "/kv/get/b%2Fk", 200),
                                ("tok-r", "/kv/get/b%2Fk", 200), ("test-token", "/kv/set/b%2Fk", 200),
                                ("tok-r", "/kv/set/b%2Fk", 403), ("test-token", "/sql/execute", 200)]:
        kw = {"json": {"sql": "CREATE TABLE IF NOT EXISTS t (n INTEGER)"}} if "sql" in path else {}
        method = "GET" if "/get/" in path else "POST"
        r = s.request(method, scoped.base + path, headers={"Authorization": f"Bearer {token}"},
                      data=None if kw else "v", timeout=10, **kw)
        assert r.status_code == status, (token, path, r.text)


def test_kv_names_outside_the_prefixes_are_refused_and_unchanged(scoped):
    a = scoped.a
    assert call(a, "POST", "/kv/set/a%2Fk", data="1").status_code == 200
    assert scoped.post("/kv/set/b%2Fk", data="theirs").status_code == 200
    forbidden(call(a, "GET", "/kv/get/b%2Fk"),
              "token 'tenant-a' may only use names starting with 'a/', 'a.'; got 'b/k'")
    forbidden(call(a, "POST", "/kv/set/b%2Fk", data="mine"))
    forbidden(call(a, "DELETE", "/kv/del/b%2Fk"))
    forbidden(call(a, "POST", "/kv/increment/b%2Fn"))
    forbidden(call(a, "POST", "/kv/expire/b%2Fk?seconds=1"))
    forbidden(call(a, "GET", "/kv/watch/b%2Fk?timeout=1"))
    forbidden(call(a, "POST", "/kv/set/batch", json={"a/x": "1", "b/k": "mine"}), "got 'b/k'")
    forbidden(call(a, "POST", "/kv/get/batch", json={"keys": ["a/k", "b/k"]}))
    forbidden(call(a, "POST", "/kv/del/batch", json={"keys": ["a/k", "b/k"]}))
    assert scoped.get("/kv/get/b%2Fk").content == b"theirs"
    assert scoped.get("/kv/get/a%2Fx").status_code == 404  # the refused batch wrote nothing
    # Listing: the glob's literal start must be inside a prefix.
    forbidden(call(a, "GET", "/kv/keys/*"), "got every name")
    forbidden(call(a, "GET", "/kv/keys/a*"), "got 'a'")
    assert call(a, "GET", "/kv/keys/a%2F*").json()["keys"] == ["a/k"]
    assert call(a, "POST", "/kv/get/batch", json={"keys": ["a/k"]}).json() == {"a/k": "1"}


def test_storage_names_outside_the_prefixes_are_refused(scoped):
    a = scoped.a
    assert call(a, "PUT", "/storage/object/a/f.txt", data=b"mine").status_code == 201
    assert scoped.put("/storage/object/b/f.txt", data=b"theirs").status_code == 201
    forbidden(call(a, "GET", "/storage/object/b/f.txt"), "got 'b/f.txt'")
    assert call(a, "HEAD", "/storage/object/b/f.txt").status_code == 403
    forbidden(call(a, "DELETE", "/storage/object/b/f.txt"))
    forbidden(call(a, "PUT", "/storage/object/b/g.txt", data=b"x"))
    forbidden(call(a, "POST", "/storage/copy", json={"from": "b/f.txt", "to": "a/stolen"}))
    forbidden(call(a, "POST", "/storage/copy", json={"from": "a/f.txt", "to": "b/f.txt"}))
    forbidden(call(a, "POST", "/storage/delete/batch", json={"paths": ["a/f.txt", "b/f.txt"]}))
    forbidden(call(a, "POST", "/storage/presign/b/f.txt", json={"method": "GET"}))
    forbidden(call(a, "GET", "/storage/list"), "got every name")
    forbidden(call(a, "GET", "/storage/list/a?prefix_mode=string"), "got 'a'")
    listed = call(a, "GET", "/storage/list/a").json()["objects"]
    assert [o["location"] for o in listed] == ["a/f.txt"]
    assert scoped.get("/storage/object/b/f.txt").content == b"theirs"
    assert scoped.get("/storage/object/a/f.txt").content == b"mine"
    assert scoped.get("/storage/object/a/stolen").status_code == 404
    # A presigned URL of its own object works without any token.
    url = call(a, "POST", "/storage/presign/a/f.txt", json={"method": "GET"}).json()["url"]
    assert requests.get(scoped.base + url if url.startswith("/") else url).content == b"mine"


def test_queue_names_outside_the_prefixes_are_refused(scoped):
    a = scoped.a
    assert call(a, "POST", "/queue/push/a.jobs", json={"n": 1}).status_code == 200
    assert scoped.post("/queue/push/b.jobs", json={"n": 2}).status_code == 200
    forbidden(call(a, "POST", "/queue/push/b.jobs", json={"n": 3}), "got 'b.jobs'")
    forbidden(call(a, "GET", "/queue/pop/b.jobs"))
    forbidden(call(a, "GET", "/queue/len/b.jobs"))
    forbidden(call(a, "POST", "/queue/ack/b.jobs/1"))
    forbidden(call(a, "POST", "/queue/publish/b.news", json={}))
    forbidden(call(a, "GET", "/queue/subscribe/b.news"))
    assert scoped.get("/queue/len/b.jobs").json()["length"] == 1
    popped = call(a, "GET", "/queue/pop/a.jobs").json()
    assert popped["message"]["payload"] == {"n": 1}


def test_read_only_token_reads_and_changes_nothing(scoped):
    r = scoped.r
    assert scoped.post("/kv/set/k", data="v").status_code == 200
    assert scoped.put("/storage/object/f", data=b"data").status_code == 201
    assert scoped.post("/queue/push/q", json={"n": 1}).status_code == 200
    assert call(r, "GET", "/kv/get/k").content == b"v"
    assert call(r, "GET", "/kv/exists/k").status_code == 200
    assert call(r, "GET", "/kv/ttl/k").status_code == 200
    assert call(r, "GET", "/kv/keys/*").json()["keys"] == ["k"]
    assert call(r, "POST", "/kv/get/batch", json={"keys": ["k"]}).status_code == 200
    assert call(r, "GET", "/storage/object/f").content == b"data"
    assert call(r, "GET", "/storage/list").status_code == 200
    assert call(r, "GET", "/queue/len/q").json()["length"] == 1
    for method, path, kw in [
            ("POST", "/kv/set/k", {"data": "x"}),
            ("POST", "/kv/set/batch", {"json": {"k": "x"}}),
            ("DELETE", "/kv/del/k", {}),
            ("POST", "/kv/del/batch", {"json": {"keys": ["k"]}}),
            ("POST", "/kv/increment/n", {}),
            ("POST", "/kv/expire/k?seconds=1", {}),
            ("POST", "/kv/persist/k", {}),
            ("PUT", "/storage/object/f", {"data": b"x"}),
            ("DELETE", "/storage/object/f", {}),
            ("POST", "/storage/copy", {"json": {"from": "f", "to": "g"}}),
            ("POST", "/storage/delete/batch", {"json": {"paths": ["f"]}}),
            ("POST", "/queue/push/q", {"json": {}}),
            ("GET", "/queue/pop/q", {}),
            ("POST", "/queue/publish/t", {"json": {}}),
            ("GET", "/queue/subscribe/t", {})]:
        forbidden(call(r, method, path, **kw), "token 'reader' is read-only")
    forbidden(call(r, "POST", "/storage/presign/f", json={"method": "PUT"}), "presign GET only")
    assert call(r, "POST", "/storage/presign/f", json={"method": "GET"}).status_code == 200
    assert scoped.get("/kv/get/k").content == b"v"
    assert scoped.get("/storage/object/f").content == b"data"
    assert scoped.get("/storage/object/g").status_code == 404
    assert scoped.get("/queue/len/q").json()["length"] == 1


@pytest.fixture(params=["sqlite", "postgres"])
def sql_scoped(request, start_mikcar, tmp_path):
    if request.param == "postgres":
        assert PG_URL, "MIKCAR_TEST_POSTGRES_URL is not set (scripts/test-backends.sh starts one)"
        url = PG_URL
    else:
        url = f"sqlite://{tmp_path}/db.sqlite3"
    cfg = write(tmp_path / "mikcar.toml", TOKENS.replace('"kv", "storage", "queue", "sql"', '"sql"')
                .replace('["kv", "storage", "queue"]', '["metrics"]'))
    m = start_mikcar(["--sql", "--config", cfg], env={"DATABASE_URL": url},
                     data_dir=fresh(tmp_path / "data"))
    m.r = as_token(m, "tok-r")
    m.table = "ro_" + uuid.uuid4().hex[:12]
    m.backend = request.param
    assert m.post("/sql/execute", json={"sql": f"CREATE TABLE {m.table} (n INTEGER)"}).ok
    assert m.post("/sql/execute", json={"sql": f"INSERT INTO {m.table} VALUES (1)"}).ok
    yield m
    m.post("/sql/execute", json={"sql": f"DROP TABLE IF EXISTS {m.table}"})


def test_read_only_sql_runs_in_a_read_only_transaction(sql_scoped):
    m, r, t = sql_scoped, sql_scoped.r, sql_scoped.table
    count = {"sql": f"SELECT count(*) AS n FROM {t}"}
    assert call(r, "POST", "/sql/query", json=count).json()["rows"] == [{"n": 1}]
    writes = [f"INSERT INTO {t} VALUES (2)", f"UPDATE {t} SET n = 5", f"DELETE FROM {t}",
              f"DROP TABLE {t}", f"CREATE TABLE {t}_x (n INTEGER)"]
    for sql in writes:
        for path in ("/sql/query", "/sql/execute"):
            forbidden(call(r, "POST", path, json={"sql": sql}))
    forbidden(call(r, "POST", "/sql/batch", json={"statements": [
        {"sql": f"SELECT 1"}, {"sql": f"INSERT INTO {t} VALUES (3)"}]}))
    script = f'sql.execute("INSERT INTO {t} VALUES (4)"); return 1;'
    forbidden(call(r, "POST", "/sql/script", json={"script": script}))
    # Nothing a statement can say makes the transaction writable again.
    if m.backend == "postgres":
        escape = [{"sql": "SET TRANSACTION READ WRITE"}, {"sql": f"INSERT INTO {t} VALUES (6)"}]
    else:
        escape = [{"sql": "PRAGMA query_only = 0"}, {"sql": f"INSERT INTO {t} VALUES (6)"}]
    resp = call(r, "POST", "/sql/batch", json={"statements": escape})
    assert resp.status_code in (400, 403), resp.text
    script = ";".join(f'sql.execute({s["sql"]!r})' for s in escape)
    resp = call(r, "POST", "/sql/script", json={"script": script})
    assert resp.status_code in (400, 403), resp.text
    assert call(r, "POST", "/sql/query", json=count).json()["rows"] == [{"n": 1}]
    assert m.post("/sql/query", json=count).json()["rows"] == [{"n": 1}]
    # Nor can it leave the pooled connection changed for the next request.
    if m.backend == "postgres":
        changes = ["SELECT set_config('search_path', 'nowhere', false)",
                   "SELECT set_config('default_transaction_read_only', 'on', false)"]
    else:
        # SQLite applies PRAGMAs while preparing; they would outlast the transaction.
        changes = ["PRAGMA ignore_check_constraints = 1", "PRAGMA locking_mode = EXCLUSIVE",
                   "PRAGMA foreign_keys = OFF", f"ATTACH '{m.data_dir}/other.db' AS other"]
    for sql in changes:
        resp = call(r, "POST", "/sql/batch", json={"statements": [{"sql": sql}]})
        if m.backend == "sqlite":
            forbidden(resp, "not authorized")
            forbidden(call(r, "POST", "/sql/query", json={"sql": sql}), "not authorized")
            assert not os.path.exists(f"{m.data_dir}/other.db")
            assert m.post("/sql/query", json={"sql": sql}).ok  # the full token may
            forbidden(call(r, "POST", "/sql/query", json={"sql": sql}))  # even when cached
            m.post("/sql/query", json={"sql": "DETACH other" if "ATTACH" in sql else
                                       sql.replace("= 1", "= 0").replace("EXCLUSIVE", "NORMAL")
                                       .replace("OFF", "ON")})
    for _ in range(6):  # every pooled connection in turn
        assert m.post("/sql/query", json=count).json()["rows"] == [{"n": 1}]
        assert m.post("/sql/execute", json={"sql": f"UPDATE {t} SET n = n"}).ok
    # The connection went back to the pool writable: the full token still writes.
    for _ in range(4):
        assert m.post("/sql/execute", json={"sql": f"INSERT INTO {t} VALUES (7)"}).ok
    assert m.post("/sql/query", json=count).json()["rows"] == [{"n": 5}]
    forbidden(call(r, "POST", "/sql/execute", json={"sql": f"DELETE FROM {t}"}))


# --- reload -----------------------------------------------------------------------------------

def test_sighup_reloads_tokens_and_keeps_them_when_the_file_is_bad(start_mikcar, tmp_path):
    path = tmp_path / "mikcar.toml"
    base = 'services = ["kv"]\n[kv]\nurl = "memory://"\n'
    write(path, base + '[[tokens]]\nname = "old"\ntoken = "old-tok"\nservices = ["kv"]\n')
    m = start_mikcar(["--config", str(path)], data_dir=fresh(tmp_path / "d"))
    old, new = as_token(m, "old-tok"), as_token(m, "new-tok")
    assert call(old, "GET", "/kv/get/k").status_code == 404

    def hup(expect):
        before = m.output().count(expect)
        m.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while m.output().count(expect) == before and time.time() < deadline:
            time.sleep(0.02)
        assert m.output().count(expect) > before, m.output()

    write(path, base + '[[tokens]]\nname = "new"\ntoken = "new-tok"\nservices = ["kv"]\n'
                       'read_only = true\n')
    assert "1 scoped token(s): old from" in m.output()  # names, never tokens
    hup("reloaded 1 scoped token(s): new from")
    assert_envelope(call(old, "GET", "/kv/get/k"), 401, "UNAUTHORIZED")
    assert call(new, "GET", "/kv/get/k").status_code == 404
    forbidden(call(new, "POST", "/kv/set/k", data="v"), "read-only")
    assert m.get("/kv/get/k").status_code == 404  # the full token stays

    write(path, base + "[[tokens]]\nthis is not toml\n")
    hup("keeping the tokens in use")
    assert call(new, "GET", "/kv/get/k").status_code == 404
    write(path, base + '[[tokens]]\nname = "bad"\ntoken = "x"\nservices = ["sql"]\n')
    hup("keeping the tokens in use")
    assert call(new, "GET", "/kv/get/k").status_code == 404
    assert "new-tok" not in m.output() and "old-tok" not in m.output()
    assert m.proc.poll() is None


def test_sighup_reloads_the_files_auth_token_when_no_flag_or_env_gave_one(start_mikcar, tmp_path):
    path = tmp_path / "mikcar.toml"
    base = 'services = ["kv"]\n[kv]\nurl = "memory://"\n[[tokens]]\ntoken = "s"\nservices = ["kv"]\n'
    write(path, base)
    m = start_mikcar(["--config", str(path)], token=None, data_dir=fresh(tmp_path / "d"))
    assert_envelope(m.get("/kv/get/k", headers={"Authorization": "Bearer added"}), 401,
                    "UNAUTHORIZED")
    write(path, 'auth_token = "added"\n' + base)
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reloaded" not in m.output() and time.time() < deadline:
        time.sleep(0.02)
    assert m.get("/kv/get/k", headers={"Authorization": "Bearer added"}).status_code == 404


def test_sighup_cannot_turn_authentication_off(start_mikcar, tmp_path):
    path = tmp_path / "mikcar.toml"
    base = 'services = ["kv"]\n[kv]\nurl = "memory://"\n'
    write(path, base + '[[tokens]]\ntoken = "only"\nservices = ["kv"]\n')
    m = start_mikcar(["--config", str(path)], token=None, data_dir=fresh(tmp_path / "d"))
    write(path, base)
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "keeping the tokens in use" not in m.output() and time.time() < deadline:
        time.sleep(0.02)
    assert "turn authentication off" in m.output(), m.output()
    assert_envelope(m.get("/kv/get/k"), 401, "UNAUTHORIZED")
    assert call(as_token(m, "only"), "GET", "/kv/get/k").status_code == 404
