"""Conformance suite for /sql (SPEC §5.1–5.2, §11 "SQL:"), run against every SQL backend.

The `launch` fixture starts `mikcar --sql` on sqlite://<tmp>/db.sqlite3 and on the PostgreSQL that
scripts/test-backends.sh starts (MIKCAR_TEST_POSTGRES_URL; missing → the postgres tests fail, they
do not skip). The PostgreSQL database is shared, so every test names its tables with a unique
suffix (`tname`) and drops them at the end. Tests marked PG_ONLY / SQLITE_ONLY cover one
backend's types; the PG_ONLY pool tests (restart recovery, a stopped server, pool exhaustion)
restart, stop and start the server with the MIKCAR_TEST_POSTGRES_{RESTART,STOP,START} commands.
"""
import base64
import concurrent.futures
import json
import os
import subprocess
import threading
import time
import uuid

import pytest
import requests

from conftest import BIN, TOKEN, assert_envelope, metrics

PG_URL = os.environ.get("MIKCAR_TEST_POSTGRES_URL")
BIG = 2 ** 53 + 1  # 9007199254740993: not exact as a double


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    return request.param


def pg_url():
    assert PG_URL, "MIKCAR_TEST_POSTGRES_URL is not set (scripts/test-backends.sh starts a PostgreSQL)"
    return PG_URL


def with_query(url, extra):
    return url + ("&" if "?" in url else "?") + extra if extra else url


@pytest.fixture
def drops():
    """SQL to run against PostgreSQL after the test (DROP TABLE …), through psql."""
    todo = []
    yield todo
    if todo and PG_URL:
        psql("; ".join(reversed(todo)))


@pytest.fixture
def launch(backend, start_mikcar, tmp_path, drops):
    """launch(args, url_query) → a running `mikcar --sql` on this test's backend, with
    .backend and .tname(base) (a unique table name, dropped after the test on PostgreSQL)."""

    def go(args=(), url_query=""):
        url = f"sqlite://{tmp_path}/db.sqlite3" if backend == "sqlite" else pg_url()
        m = start_mikcar(["--sql", *args], env={"DATABASE_URL": with_query(url, url_query)},
                         data_dir=str(tmp_path))
        m.backend = backend

        def tname(base="t", kind="TABLE"):
            name = f"{base}_{uuid.uuid4().hex[:12]}"
            drops.append(f"DROP {kind} IF EXISTS {name} CASCADE")
            return name

        m.tname = tname
        return m

    return go


@pytest.fixture
def db(launch):
    return launch()


PG_ONLY = pytest.mark.parametrize("backend", ["postgres"])
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


# --- helpers ---------------------------------------------------------------------------------

def psql(sql):
    """Runs SQL on its own connection (not through mikcar); returns psql's unaligned output."""
    out = subprocess.run(["psql", pg_url(), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def psql_down():
    try:
        psql("SELECT 1")
        return False
    except AssertionError:
        return True


def shell(var):
    cmd = os.environ.get(var)
    assert cmd, f"{var} is not set (scripts/test-backends.sh exports it)"
    out = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def q(m, sql, params=None, path="/sql/query", **kw):
    body = {"sql": sql} if params is None else {"sql": sql, "params": params}
    kw.setdefault("timeout", 30)
    return m.post(path, json=body, **kw)


def rows(m, sql, params=None):
    r = q(m, sql, params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["row_count"] == len(body["rows"])
    return body["rows"]


def value(m, sql, params=None):
    (row,) = rows(m, sql, params)
    (v,) = row.values()
    return v


def execute(m, sql, params=None):
    r = q(m, sql, params, path="/sql/execute")
    assert r.status_code == 200, r.text
    return r.json()


def batch(m, statements, **kw):
    return m.post("/sql/batch", json={"statements": [
        {"sql": s[0], "params": s[1]} if isinstance(s, tuple) else {"sql": s} for s in statements]},
        timeout=30, **kw)


def sql_error(r, status, backend, code=None):
    """An SQL error envelope: SQL_ERROR + sqlstate (5 chars) or sqlite_code (SQLITE_…)."""
    body = assert_envelope(r, status, "SQL_ERROR")
    if backend == "postgres":
        assert isinstance(body.get("sqlstate"), str) and len(body["sqlstate"]) == 5, body
        if code:
            assert body["sqlstate"] == code, body
    else:
        assert isinstance(body.get("sqlite_code"), str) and body["sqlite_code"].startswith("SQLITE_"), body
        if code:
            assert body["sqlite_code"] == code, body
    return body


def unavailable(r):
    assert r.status_code == 503, r.text
    body = assert_envelope(r, 503, r.json().get("code"))
    assert body["code"] in ("SQL_ERROR", "UNAVAILABLE"), body
    return body


def until_ok(m, sql="SELECT 1 AS one", attempts=3, within=10.0):
    """The query succeeds within `attempts` tries in `within` seconds; earlier tries may be 503."""
    end = time.monotonic() + within
    for i in range(attempts):
        r = q(m, sql, timeout=max(1.0, end - time.monotonic()))
        if r.status_code == 200:
            return r
        unavailable(r)
        if i + 1 < attempts:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    pytest.fail(f"no success after {attempts} tries: {r.status_code} {r.text}")


def post_many(m, bodies, path="/sql/query", workers=50, timeout=30):
    """POSTs every body at once from threads, each on its own connection."""
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def one(body):
        t = time.monotonic()
        r = requests.post(m.url(path), json=body, headers=headers, timeout=timeout)
        return r, time.monotonic() - t

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, bodies))


# --- queries and results ---------------------------------------------------------------------

def test_query_shape(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT, ok BOOLEAN)")
    execute(db, f"INSERT INTO {t} (id, name, ok) VALUES (1, 'a', true), (2, 'b', false)")
    r = q(db, f"SELECT id, name FROM {t} ORDER BY id")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["rows"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert body["row_count"] == 2
    assert [c["name"] for c in body["columns"]] == ["id", "name"]
    assert all(isinstance(c["type"], str) and c["type"] for c in body["columns"]), body
    # no rows: still the columns
    body = q(db, f"SELECT id, name FROM {t} WHERE id > 100").json()
    assert body["rows"] == [] and body["row_count"] == 0
    assert [c["name"] for c in body["columns"]] == ["id", "name"]
    # params may be omitted or null; one trailing semicolon is still one statement
    assert rows(db, "SELECT 1 AS x;  ") == [{"x": 1}]
    assert db.post("/sql/query", json={"sql": "SELECT 2 AS x", "params": None}).json()["rows"] == [{"x": 2}]


def test_rows_keep_column_order(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (zeta INTEGER, alpha TEXT, mid INTEGER)")
    execute(db, f"INSERT INTO {t} VALUES (1, 'x', 2)")
    for sql, names in [(f"SELECT * FROM {t}", ["zeta", "alpha", "mid"]),
                       (f"SELECT mid, zeta, alpha FROM {t}", ["mid", "zeta", "alpha"]),
                       ("SELECT 3 AS c, 1 AS a, 2 AS b, 'x' AS \"Zed\", 4 AS aa", ["c", "a", "b", "Zed", "aa"])]:
        r = q(db, sql)
        assert r.status_code == 200, r.text
        raw = dict(json.loads(r.text, object_pairs_hook=list))
        (row,) = raw["rows"]
        assert [k for k, _ in row] == names, r.text
        assert [dict(c)["name"] for c in raw["columns"]] == names


def test_placeholders(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER, name TEXT)")
    execute(db, f"INSERT INTO {t} (id, name) VALUES ($1, $2), ($3, $4)", [1, "one", 2, "two"])
    assert rows(db, f"SELECT name FROM {t} WHERE id = $1", [2]) == [{"name": "two"}]
    # $n by number, not by order of appearance, and a placeholder used twice
    assert rows(db, "SELECT $2 AS a, $1 AS b", ["first", "second"]) == [{"a": "second", "b": "first"}]
    assert rows(db, f"SELECT name FROM {t} WHERE id = $1 OR id = $1 + 1 ORDER BY id", [1]) == \
        [{"name": "one"}, {"name": "two"}]
    if db.backend == "sqlite":
        assert rows(db, f"SELECT name FROM {t} WHERE id = ? AND name = ?", [1, "one"]) == [{"name": "one"}]


def test_param_kinds_round_trip(db):
    t = db.tname()
    pg = db.backend == "postgres"
    execute(db, f"CREATE TABLE {t} (id INTEGER, n BIGINT, f {'DOUBLE PRECISION' if pg else 'REAL'}, "
                f"s TEXT, b BOOLEAN, j {'JSONB' if pg else 'TEXT'}, z TEXT)")
    s = "héllo ✓ 😀 \"q\" \\ \n\t\x01 end"
    execute(db, f"INSERT INTO {t} VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [1, -42, 0.1, s, True, {"a": [1, 2.5, None, "x"], "b": {}}, None])
    execute(db, f"INSERT INTO {t} VALUES ($1, $2, $3, $4, $5, $6, $7)", [2, BIG, -1.5e300, "", False, [1, "2"], None])
    execute(db, f"INSERT INTO {t} VALUES ($1, $2, $3, $4, $5, $6, $7)", [3, -BIG, 2.0, "0", None, None, None])
    execute(db, f"INSERT INTO {t} VALUES ($1, $2, $3, $4, $5, $6, $7)", [4, 2 ** 53 - 1, 0.0, "null", True, [], ""])
    got = rows(db, f"SELECT n, f, s, b, j, z FROM {t} ORDER BY id")
    true, false = (True, False) if pg else (1, 0)
    if pg:  # jsonb is embedded JSON
        j1, j2, j4 = {"a": [1, 2.5, None, "x"], "b": {}}, [1, "2"], []
    else:   # sqlite stores the JSON text
        j1, j2, j4 = (got[0]["j"], got[1]["j"], got[3]["j"])
        assert json.loads(j1) == {"a": [1, 2.5, None, "x"], "b": {}} and json.loads(j2) == [1, "2"]
        assert json.loads(j4) == []
    assert got == [
        {"n": -42, "f": 0.1, "s": s, "b": true, "j": j1, "z": None},
        {"n": str(BIG), "f": -1.5e300, "s": "", "b": false, "j": j2, "z": None},
        {"n": str(-BIG), "f": 2.0, "s": "0", "b": None, "j": None, "z": None},
        {"n": 2 ** 53 - 1, "f": 0.0, "s": "null", "b": true, "j": j4, "z": ""},
    ]
    # a typed param compares with the column
    assert rows(db, f"SELECT id FROM {t} WHERE n = $1", [BIG]) == [{"id": 2}]
    assert rows(db, f"SELECT id FROM {t} WHERE s = $1", [s]) == [{"id": 1}]
    assert rows(db, f"SELECT count(*) AS c FROM {t} WHERE b = $1", [True]) == [{"c": 2}]


@PG_ONLY
def test_postgres_types(db):
    mood = db.tname("mood", kind="TYPE")
    execute(db, f"CREATE TYPE {mood} AS ENUM ('sad', 'happy')")
    r = q(db, f"""SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, {BIG}::int8 AS big,
        -{BIG}::int8 AS nbig, 9223372036854775807::int8 AS max8, 12.3400::numeric AS num,
        123456789012345678901234567890.000000001::numeric AS hugenum, 1.5::float4 AS f4,
        0.1::float8 AS f8, 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf,
        '-Infinity'::float8 AS ninf, true AS t, false AS f, 'txt'::text AS tx, 'vc'::varchar(5) AS vc,
        'c'::char(3) AS ch, '{{"a": [1, {{"b": null}}], "s": "x"}}'::jsonb AS jb, '[1, "2"]'::json AS js,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '2024-02-29'::date AS d,
        '13:14:15.5'::time AS tm, '13:14:15'::time AS tm0,
        '2024-01-02 03:04:05.123456'::timestamp AS ts, '2024-01-02 03:04:05'::timestamp AS ts0,
        '2024-01-02 03:04:05.120+02'::timestamptz AS tz, '2024-01-02 23:30:00-05'::timestamptz AS tz0,
        '1 day 2 hours'::interval AS iv, '\\x00ff10'::bytea AS ba, ''::bytea AS ba0,
        ARRAY[1, 2, NULL]::int4[] AS ai, ARRAY['a', 'b c', '"q"', NULL]::text[] AS at,
        '{{{{1,2}},{{3,4}}}}'::int4[] AS a2, '{{}}'::int4[] AS a0,
        '10.0.0.1'::inet AS ip, '12.34'::money AS mo, 'happy'::{mood} AS e,
        NULL::int4 AS n4, NULL::jsonb AS njb, NULL::text AS ntx, NULL::timestamptz AS ntz""")
    assert r.status_code == 200, r.text
    body = r.json()
    (row,) = body["rows"]
    mo, tm = row.pop("mo"), row.pop("tm")
    assert isinstance(mo, str) and "12.34" in mo, mo
    assert isinstance(tm, str) and tm.rstrip("0") == "13:14:15.5", tm
    assert row == {
        "i2": 1, "i4": 2, "i8": 3, "big": str(BIG), "nbig": str(-BIG), "max8": "9223372036854775807",
        "num": "12.3400", "hugenum": "123456789012345678901234567890.000000001", "f4": 1.5,
        "f8": 0.1, "nan": None, "inf": None, "ninf": None, "t": True, "f": False, "tx": "txt",
        "vc": "vc", "ch": "c  ", "jb": {"a": [1, {"b": None}], "s": "x"}, "js": [1, "2"],
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "d": "2024-02-29", "tm0": "13:14:15",
        "ts": "2024-01-02T03:04:05.123456", "ts0": "2024-01-02T03:04:05",
        "tz": "2024-01-02T01:04:05.12+00:00", "tz0": "2024-01-03T04:30:00+00:00",
        "iv": "1 day 02:00:00", "ba": {"base64": base64.b64encode(b"\x00\xff\x10").decode()},
        "ba0": {"base64": ""}, "ai": [1, 2, None], "at": ["a", "b c", '"q"', None],
        "a2": [[1, 2], [3, 4]], "a0": [], "ip": "10.0.0.1", "e": "happy",
        "n4": None, "njb": None, "ntx": None, "ntz": None,
    }
    types = {c["name"]: c["type"] for c in body["columns"]}
    assert all(isinstance(v, str) and v for v in types.values()), types
    assert (types["i4"], types["tx"], types["t"], types["u"], types["tz"], types["jb"]) == \
        ("int4", "text", "bool", "uuid", "timestamptz", "jsonb")


@PG_ONLY
def test_postgres_untyped_string_params(db):
    """Strings and nulls go untyped: no casts needed for uuid, date, timestamptz, numeric, …"""
    mood, t = db.tname("mood", kind="TYPE"), db.tname()
    execute(db, f"CREATE TYPE {mood} AS ENUM ('sad', 'happy')")
    execute(db, f"""CREATE TABLE {t} (id int4, i2 int2, i8 int8, num numeric(10,4), f8 float8, b bool,
        jb jsonb, js json, u uuid, d date, tm time, ts timestamp, tz timestamptz, iv interval,
        ba bytea, ai int4[], tx text[], ip inet, e {mood})""")
    cols = "id, i2, i8, num, f8, b, jb, js, u, d, tm, ts, tz, iv, ba, ai, tx, ip, e"
    ph = ", ".join(f"${i}" for i in range(1, 20))
    u = str(uuid.uuid4())
    execute(db, f"INSERT INTO {t} ({cols}) VALUES ({ph})",
            [1, "7", str(BIG), "12.34", "2.5", "true", '{"k": [1]}', {"o": 1}, u, "2024-02-29",
             "13:14:15", "2024-01-02T03:04:05.5", "2024-01-02 03:04:05.120+02", "1 day 2 hours",
             "\\x00ff10", "{1,2}", '{a,"b c"}', "192.168.1.2", "happy"])
    execute(db, f"INSERT INTO {t} ({cols}) VALUES ({ph})", [2] + [None] * 18)
    execute(db, f"INSERT INTO {t} (id, i2, i8, num, f8, b) VALUES ($1, $2, $3, $4, $5, $6)",
            [3, 7, BIG, 12.5, 2, False])  # JSON numbers and bools into the same columns
    got = rows(db, f"SELECT {cols} FROM {t} ORDER BY id")
    assert got[0] == {
        "id": 1, "i2": 7, "i8": str(BIG), "num": "12.3400", "f8": 2.5, "b": True, "jb": {"k": [1]},
        "js": {"o": 1}, "u": u, "d": "2024-02-29", "tm": "13:14:15", "ts": "2024-01-02T03:04:05.5",
        "tz": "2024-01-02T01:04:05.12+00:00", "iv": "1 day 02:00:00", "ba": {"base64": "AP8Q"},
        "ai": [1, 2], "tx": ["a", "b c"], "ip": "192.168.1.2", "e": "happy"}
    assert got[1] == {"id": 2, **{c: None for c in cols.split(", ")[1:]}}
    assert {k: got[2][k] for k in ("i2", "i8", "num", "f8", "b")} == \
        {"i2": 7, "i8": str(BIG), "num": "12.5000", "f8": 2, "b": False}
    # untyped strings in WHERE clauses too
    assert rows(db, f"SELECT id FROM {t} WHERE u = $1 AND d = $2 AND tz = $3",
                [u, "2024-02-29", "2024-01-02T01:04:05.12Z"]) == [{"id": 1}]


@SQLITE_ONLY
def test_sqlite_types(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (i INTEGER, r REAL, s TEXT, b BLOB, d DECIMAL(10,2), v VARCHAR(20), x)")
    execute(db, f"INSERT INTO {t} VALUES (1, 1.5, 'txt', x'00ff10', 2.5, 'v', NULL)")
    execute(db, f"INSERT INTO {t} VALUES ($1, $2, $3, NULL, NULL, NULL, $4)", [BIG, -0.25, "", 7])
    body = q(db, f"SELECT i, r, s, b, d, v, x FROM {t} ORDER BY rowid").json()
    assert body["rows"] == [
        {"i": 1, "r": 1.5, "s": "txt", "b": {"base64": "AP8Q"}, "d": 2.5, "v": "v", "x": None},
        {"i": str(BIG), "r": -0.25, "s": "", "b": None, "d": None, "v": None, "x": 7},
    ]
    assert [c["type"] for c in body["columns"][:6]] == \
        ["integer", "real", "text", "blob", "decimal(10,2)", "varchar(20)"]
    # no declared type: the value's storage class
    body = q(db, "SELECT 1 AS i, 1.5 AS r, 'x' AS t, x'00' AS b, NULL AS n, true AS yes, false AS no").json()
    assert body["rows"] == [{"i": 1, "r": 1.5, "t": "x", "b": {"base64": "AA=="}, "n": None, "yes": 1, "no": 0}]
    assert [c["type"].lower() for c in body["columns"][:5]] == ["integer", "real", "text", "blob", "null"]


def test_sqlite_memory(start_mikcar, tmp_path):
    m = start_mikcar(["--sql"], env={"DATABASE_URL": "sqlite::memory:"}, data_dir=str(tmp_path))
    execute(m, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    post_many(m, [{"sql": "INSERT INTO t (v) VALUES ($1)", "params": [str(i)]} for i in range(20)],
              path="/sql/execute", workers=20)
    assert value(m, "SELECT count(*) AS c FROM t") == 20  # every request sees the same database
    assert not os.path.exists(tmp_path / "db.sqlite3")


# --- execute and batch -----------------------------------------------------------------------

def test_execute(db):
    t = db.tname()
    serial = "SERIAL PRIMARY KEY" if db.backend == "postgres" else "INTEGER PRIMARY KEY"
    execute(db, f"CREATE TABLE {t} (id {serial}, v TEXT)")
    r = execute(db, f"INSERT INTO {t} (v) VALUES ($1), ($2), ($3)", ["a", "b", "c"])
    assert r["rows_affected"] == 3
    if db.backend == "sqlite":
        assert r["last_insert_id"] == 3
        assert execute(db, f"INSERT INTO {t} (id, v) VALUES (41, 'x')") == {"rows_affected": 1, "last_insert_id": 41}
    assert execute(db, f"UPDATE {t} SET v = 'z' WHERE id <= $1", [2])["rows_affected"] == 2
    assert execute(db, f"CREATE INDEX {t}_v ON {t} (v)")["rows_affected"] == 0  # DDL changes no rows
    assert execute(db, f"DELETE FROM {t} WHERE v = $1", ["nope"])["rows_affected"] == 0
    # RETURNING through /sql/query
    r = q(db, f"INSERT INTO {t} (v) VALUES ($1) RETURNING id, v", ["r"])
    assert r.status_code == 200, r.text
    (row,) = r.json()["rows"]
    assert row["v"] == "r" and isinstance(row["id"], int)


def test_batch_commits(db):
    t = db.tname()
    r = batch(db, [f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)",
                   (f"INSERT INTO {t} (id, v) VALUES ($1, $2)", [1, "a"]),
                   (f"INSERT INTO {t} (id, v) VALUES ($1, $2), ($3, $4)", [2, "b", 3, "c"]),
                   (f"UPDATE {t} SET v = $1 WHERE id >= $2", ["z", 2])])
    assert r.status_code == 200, r.text
    assert r.json() == {"statements_executed": 4, "status": "ok", "total_rows_affected": 5}
    assert rows(db, f"SELECT id, v FROM {t} ORDER BY id") == [{"id": 1, "v": "a"}, {"id": 2, "v": "z"},
                                                               {"id": 3, "v": "z"}]


@pytest.mark.parametrize("bad,status", [("INSERT INTO {t} (id, v) VALUES (1, 'dup')", 409),
                                        ("INSERT INTO {t} (id, vv) VALUES (9, 'x')", 400),
                                        ("INSRT INTO {t} VALUES (9)", 400)],
                         ids=["unique", "column", "syntax"])
def test_batch_rolls_back(db, bad, status):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    execute(db, f"INSERT INTO {t} (id, v) VALUES (1, 'a')")
    r = batch(db, [(f"INSERT INTO {t} (id, v) VALUES ($1, $2)", [2, "b"]),
                   f"UPDATE {t} SET v = 'changed'",
                   bad.format(t=t),
                   f"INSERT INTO {t} (id, v) VALUES (4, 'd')"])
    body = sql_error(r, status, db.backend)
    assert body["statement_index"] == 2, body
    assert rows(db, f"SELECT id, v FROM {t} ORDER BY id") == [{"id": 1, "v": "a"}]
    # nothing is left held: the next write works
    assert execute(db, f"INSERT INTO {t} (id, v) VALUES (5, 'e')")["rows_affected"] == 1


# --- errors ----------------------------------------------------------------------------------

def test_client_errors(db):
    t, pg = db.tname(), db.backend == "postgres"
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    body = sql_error(q(db, "SELEC 1"), 400, db.backend, "42601" if pg else None)
    assert "syntax" in body["error"].lower(), body
    body = sql_error(q(db, f"SELECT * FROM no_such_{t}"), 400, db.backend, "42P01" if pg else None)
    assert f"no_such_{t}" in body["error"], body
    body = sql_error(q(db, f"SELECT nope FROM {t}"), 400, db.backend, "42703" if pg else None)
    assert "nope" in body["error"], body
    sql_error(q(db, f"UPDATE {t} SET nope = 1", path="/sql/execute"), 400, db.backend)
    if pg:
        sql_error(q(db, "SELECT 'abc'::int AS x"), 400, db.backend, "22P02")
        sql_error(q(db, f"INSERT INTO {t} (id) VALUES ($1)", ["abc"], path="/sql/execute"), 400, db.backend, "22P02")
        sql_error(q(db, "SELECT 1/0 AS x"), 400, db.backend, "22012")
    # parameter count mismatch, both ways
    sql_error(q(db, f"SELECT v FROM {t} WHERE id = $1", []), 400, db.backend)
    sql_error(q(db, f"SELECT v FROM {t} WHERE id = $1 AND v = $2", [1]), 400, db.backend)
    sql_error(q(db, f"SELECT v FROM {t} WHERE id = $1", [1, 2]), 400, db.backend)
    sql_error(q(db, f"INSERT INTO {t} (id) VALUES ($1)", [], path="/sql/execute"), 400, db.backend)
    assert value(db, f"SELECT count(*) AS c FROM {t}") == 0


@pytest.mark.parametrize("path", ["/sql/query", "/sql/execute"])
def test_one_statement_only(db, path):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER)")
    for sql in [f"INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (2)",
                f"SELECT 1 AS a; INSERT INTO {t} VALUES (3)",
                f"INSERT INTO {t} VALUES (4);DELETE FROM {t}"]:
        r = q(db, sql, path=path)
        assert r.status_code == 400, r.text
        assert assert_envelope(r, 400, r.json()["code"])["code"] in ("SQL_ERROR", "BAD_REQUEST")
    assert value(db, f"SELECT count(*) AS c FROM {t}") == 0  # nothing ran


def test_constraint_violations(db):
    pg = db.backend == "postgres"
    p, c = db.tname("parent"), db.tname("child")
    execute(db, f"CREATE TABLE {p} (id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER NOT NULL CHECK (n > 0))")
    execute(db, f"CREATE TABLE {c} (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES {p}(id))")
    execute(db, f"INSERT INTO {p} (id, email, n) VALUES (1, 'a@x', 1)")
    cases = [
        (f"INSERT INTO {p} (id, email, n) VALUES (2, $1, 1)", ["a@x"], "23505", "SQLITE_CONSTRAINT_UNIQUE",
         "unique"),
        (f"INSERT INTO {p} (id, email, n) VALUES (1, 'b@x', 1)", None, "23505", "SQLITE_CONSTRAINT_PRIMARYKEY",
         "unique"),
        (f"INSERT INTO {p} (id, email, n) VALUES (3, 'c@x', $1)", [None], "23502", "SQLITE_CONSTRAINT_NOTNULL",
         "null"),
        (f"INSERT INTO {p} (id, email, n) VALUES (4, 'd@x', $1)", [0], "23514", "SQLITE_CONSTRAINT_CHECK", "check"),
        (f"INSERT INTO {c} (id, parent_id) VALUES (1, $1)", [99], "23503", "SQLITE_CONSTRAINT_FOREIGNKEY",
         "foreign key"),
        (f"DELETE FROM {p} WHERE id = 1", None, None, None, None),  # a child refers to it (added below)
    ]
    execute(db, f"INSERT INTO {c} (id, parent_id) VALUES (7, 1)")
    for sql, params, state, name, word in cases:
        r = q(db, sql, params, path="/sql/execute")
        body = sql_error(r, 409, db.backend, (state or "23503") if pg else (name or "SQLITE_CONSTRAINT_FOREIGNKEY"))
        if word:
            assert word in body["error"].lower(), body
    assert rows(db, f"SELECT id FROM {p}") == [{"id": 1}]
    assert rows(db, f"SELECT id FROM {c}") == [{"id": 7}]


def test_statement_timeout(db):
    slow = "SELECT pg_sleep(2) AS s" if db.backend == "postgres" else \
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
    t = time.monotonic()
    r = db.post("/sql/query?statement_timeout=200ms", json={"sql": slow}, timeout=30)
    elapsed = time.monotonic() - t
    sql_error(r, 504, db.backend, "57014" if db.backend == "postgres" else None)
    assert elapsed < 1.5, elapsed
    # the connection is usable again, at once
    t = time.monotonic()
    assert value(db, "SELECT 5 AS x") == 5
    assert time.monotonic() - t < 1.0
    r = db.post("/sql/execute?statement_timeout=200ms", json={"sql": slow}, timeout=30)
    sql_error(r, 504, db.backend)
    r = db.post("/sql/batch?statement_timeout=200ms", json={"statements": [{"sql": "SELECT 1"}, {"sql": slow}]},
                timeout=30)
    assert sql_error(r, 504, db.backend)["statement_index"] == 1
    # a long statement_timeout still allows fast queries
    r = db.post("/sql/query?statement_timeout=5s", json={"sql": "SELECT 6 AS x"})
    assert r.status_code == 200 and r.json()["rows"] == [{"x": 6}], r.text
    # /metrics counts the three timeouts as the backend's
    timeouts = {dict(labels)["operation"]: value for (name, labels), value in metrics(db).items()
                if name == "mikcar_backend_errors_total" and dict(labels)["reason"] == "timeout"}
    assert timeouts == {"run": 2, "statement": 1}, timeouts


def test_postgres_url_statement_timeout_is_the_default(start_mikcar, tmp_path):
    url = with_query(pg_url(), "statement_timeout=300ms")
    m = start_mikcar(["--sql"], env={"DATABASE_URL": url}, data_dir=str(tmp_path))
    for path, body in (("/sql/query", {"sql": "SELECT pg_sleep(3) AS s"}),
                       ("/sql/batch", {"statements": [{"sql": "SELECT pg_sleep(3) AS s"}]})):
        t = time.monotonic()
        r = m.post(path, json=body, timeout=30)
        assert time.monotonic() - t < 2
        sql_error(r, 504, "postgres", "57014")
    # A request's own ?statement_timeout= still wins over the URL's.
    r = m.post("/sql/query?statement_timeout=5s", json={"sql": "SELECT pg_sleep(0.6) AS s"}, timeout=30)
    assert r.status_code == 200, r.text


def test_statement_stopped_by_the_request_deadline_is_408(launch):
    db = launch(["--timeout", "2s"])
    slow = "SELECT pg_sleep(5) AS s" if db.backend == "postgres" else \
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
    for path, body in (("/sql/query", {"sql": slow}),
                       ("/sql/batch", {"statements": [{"sql": "SELECT 1"}, {"sql": slow}]})):
        t = time.monotonic()
        r = db.post(f"{path}?statement_timeout=20s", json=body, timeout=30)
        assert time.monotonic() - t < 3.5
        assert "--timeout" in assert_envelope(r, 408, "TIMEOUT")["error"]
    assert value(db, "SELECT 5 AS x") == 5


def test_slow_query_does_not_block_others(db):
    slow = "SELECT pg_sleep(1.5) AS s" if db.backend == "postgres" else \
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
    done = {}
    th = threading.Thread(target=lambda: done.setdefault(
        "r", db.post("/sql/query?statement_timeout=1500ms", json={"sql": slow}, timeout=30)))
    th.start()
    time.sleep(0.2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    t = time.monotonic()
    for i in range(10):
        r = requests.post(db.url("/sql/query"), json={"sql": "SELECT $1 AS i", "params": [i]}, headers=headers,
                          timeout=30)
        assert r.status_code == 200, r.text
    assert time.monotonic() - t < 1.0
    th.join(30)
    assert done["r"].status_code in (200, 504), done["r"].text


def test_bad_bodies(db):
    for path in ["/sql/query", "/sql/execute", "/sql/batch"]:
        assert_envelope(db.post(path, data=b'{"sql": "SELECT 1"', headers={"Content-Type": "application/json"}),
                        400, "BAD_REQUEST")
        assert_envelope(db.post(path, data=b"SELECT 1", headers={"Content-Type": "text/plain"}),
                        415, "UNSUPPORTED_MEDIA_TYPE")
        assert_envelope(db.post(path, json=["SELECT 1"]), 422, "UNPROCESSABLE")
    for path in ["/sql/query", "/sql/execute"]:
        for body in [{}, {"params": []}, {"sql": 42}, {"sql": None}, {"sql": ["SELECT 1"]},
                     {"sql": "SELECT 1", "params": "x"}, {"sql": "SELECT 1", "params": {"a": 1}},
                     {"sql": "SELECT 1", "params": 5}]:
            assert_envelope(db.post(path, json=body), 422, "UNPROCESSABLE")
    for body in [{}, {"statements": "SELECT 1"}, {"statements": {"sql": "SELECT 1"}},
                 {"statements": [{"params": []}]}, {"statements": [{"sql": 1}]},
                 {"statements": [{"sql": "SELECT 1", "params": "x"}]}, {"statements": ["SELECT 1"]}]:
        assert_envelope(db.post("/sql/batch", json=body), 422, "UNPROCESSABLE")
    # accepted content types: none, application/json, application/*+json
    for ctype in [None, "application/json", "application/vnd.api+json", "application/json; charset=utf-8"]:
        headers = {"Content-Type": ctype} if ctype else {}
        r = db.post("/sql/query", data=b'{"sql": "SELECT 1 AS x"}', headers=headers)
        assert r.status_code == 200 and r.json()["rows"] == [{"x": 1}], (ctype, r.text)


# --- concurrency -----------------------------------------------------------------------------

def test_concurrent_inserts(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    results = post_many(db, [{"sql": f"INSERT INTO {t} (id, v) VALUES ($1, $2)", "params": [i, f"v{i}"]}
                             for i in range(50)], path="/sql/execute")
    for r, _ in results:
        assert r.status_code == 200 and r.json()["rows_affected"] == 1, r.text
    assert value(db, f"SELECT count(*) AS c FROM {t}") == 50


def test_concurrent_batches(launch):
    """Transactions queue for the write lock (SQLite's busy timeout); none fails or hangs."""
    db = launch(["--timeout", "10s"])
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    post_many(db, [{"sql": f"INSERT INTO {t} (id, v) VALUES ($1, 'a')", "params": [i]} for i in range(20)],
              path="/sql/execute")
    results = post_many(db, [{"statements": [{"sql": f"INSERT INTO {t} (id, v) VALUES ($1, 'b')", "params": [100 + i]},
                                             {"sql": f"UPDATE {t} SET v = 'u' WHERE id = $1", "params": [i]}]}
                             for i in range(20)], path="/sql/batch", workers=20)
    for r, _ in results:
        assert r.status_code == 200 and r.json()["total_rows_affected"] == 2, r.text
    assert value(db, f"SELECT count(*) AS c FROM {t} WHERE v = 'u'") == 20


# --- PostgreSQL: pool, restart, outage -------------------------------------------------------

def test_postgresql_scheme(start_mikcar, tmp_path):
    url = "postgresql://" + pg_url().split("://", 1)[1]
    m = start_mikcar(["--sql"], env={"DATABASE_URL": url}, data_dir=str(tmp_path))
    assert value(m, "SELECT current_user AS u") == "mikcar"


@PG_ONLY
def test_postgres_restart_recovery(launch):
    m = launch()
    # several pooled connections, all of which the restart kills
    for r, _ in post_many(m, [{"sql": "SELECT pg_sleep(0.2) AS s"}] * 6, workers=6):
        assert r.status_code == 200, r.text
    try:
        shell("MIKCAR_TEST_POSTGRES_RESTART")
        until_ok(m)
        # recovered: every pooled connection works again
        for r, _ in post_many(m, [{"sql": "SELECT pg_sleep(0.1) AS s"}] * 12, workers=12):
            assert r.status_code == 200, r.text
        for _ in range(5):
            assert value(m, "SELECT 7 AS x") == 7
    finally:
        if psql_down():
            shell("MIKCAR_TEST_POSTGRES_START")


@PG_ONLY
def test_postgres_outage(launch):
    m = launch(["--timeout", "10s"])
    assert value(m, "SELECT 1 AS x") == 1
    try:
        shell("MIKCAR_TEST_POSTGRES_STOP")
        for _ in range(3):
            t = time.monotonic()
            unavailable(q(m, "SELECT 1 AS x", timeout=20))
            assert time.monotonic() - t < 10.5
        unavailable(q(m, "SELECT 2 AS x", path="/sql/execute", timeout=20))
        unavailable(batch(m, ["SELECT 1"]))
        # /metrics counts the failures by backend call
        failed = {dict(labels)["operation"]: value for (name, labels), value in metrics(m).items()
                  if name == "mikcar_backend_errors_total" and dict(labels)["service"] == "sql"
                  and dict(labels)["reason"] == "unavailable"}
        assert failed == {"run": 4, "begin": 1}, failed
    finally:
        shell("MIKCAR_TEST_POSTGRES_START")
    until_ok(m)
    for _ in range(5):
        assert value(m, "SELECT 8 AS x") == 8


@PG_ONLY
def test_postgres_pool_exhaustion(launch):
    since = psql("SELECT now()")
    m = launch(["--timeout", "10s"], url_query="pool_max=4")
    count_sql = ("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mikcar' AND "
                 f"datname = current_database() AND backend_start > '{since}'")
    peak, stop = [0], threading.Event()

    def watch():  # connections held by this mikcar (plus psql's own) while the burst runs
        while not stop.is_set():
            peak[0] = max(peak[0], int(psql(count_sql)))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = post_many(m, [{"sql": "SELECT pg_sleep(0.05) AS s"}] * 200, workers=200, timeout=20)
    finally:
        stop.set()
        watcher.join()
    ok = 0
    for r, elapsed in results:
        assert elapsed < 11, elapsed  # nothing hangs past the 10 s deadline
        if r.status_code == 200:
            ok += 1
        else:
            unavailable(r)
    assert ok >= 180, f"only {ok}/200 succeeded"
    t = time.monotonic()
    assert value(m, "SELECT 9 AS x") == 9
    assert time.monotonic() - t < 1.0
    assert peak[0] <= 5, peak[0]
    assert int(psql(count_sql)) <= 5


def test_transaction_control_is_refused_and_leaves_no_open_transaction(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, v TEXT)")
    for sql in ["BEGIN", "  /* c */ begin transaction", "COMMIT", "SAVEPOINT s", "ROLLBACK"]:
        for path in ("/sql/query", "/sql/execute"):
            r = q(db, sql, path=path)
            assert r.status_code == 400, (sql, r.text)
    r = batch(db, [(f"INSERT INTO {t} (id, v) VALUES (1, 'a')", None), "COMMIT",
                   (f"INSERT INTO {t} (id, v) VALUES (2, 'b')", None)])
    assert r.status_code in (400, 422), r.text
    # Nothing of that batch landed, and every pooled connection still commits normally.
    assert value(db, f"SELECT count(*) AS n FROM {t}") == 0
    for i in range(10):
        execute(db, f"INSERT INTO {t} (id, v) VALUES ($1, 'x')", [10 + i])
    assert value(db, f"SELECT count(*) AS n FROM {t}") == 10


def test_nul_in_sql_is_refused(db):
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY)")
    execute(db, f"INSERT INTO {t} (id) VALUES (1)")
    r = q(db, f"DELETE FROM {t}\u0000 WHERE id = 5", path="/sql/execute")
    assert r.status_code == 400, r.text
    assert value(db, f"SELECT count(*) AS n FROM {t}") == 1


@PG_ONLY
def test_postgres_copy_is_refused_and_the_server_keeps_answering(db):
    r = q(db, "COPY (SELECT 1) TO STDOUT", path="/sql/execute")
    assert r.status_code == 400, r.text
    for _ in range(20):  # every pooled connection still works
        assert value(db, "SELECT 1 AS one") == 1


@PG_ONLY
def test_postgres_session_changes_do_not_leak_to_later_requests(db):
    execute(db, "SET TimeZone = 'Asia/Tokyo'")
    for _ in range(20):
        ts = value(db, "SELECT '2024-01-02 03:04:05+00'::timestamptz AS ts")
        assert ts == "2024-01-02T03:04:05+00:00", ts


# --- prepared statements (PostgreSQL prepares a repeated autocommit statement once) -----------

def prepared(m, sql):
    """How many of this session's prepared statements are `sql` (pool_max=1: one session)."""
    return value(m, "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", [sql])


@PG_ONLY
def test_postgres_repeated_statement_is_prepared_once_and_follows_schema_changes(launch):
    m = launch(url_query="pool_max=1")
    t = m.tname()
    execute(m, f"CREATE TABLE {t} (a int)")
    execute(m, f"INSERT INTO {t} VALUES (1)")
    select = f"SELECT * FROM {t}"
    assert rows(m, select) == [{"a": 1}]
    assert prepared(m, select) == 0  # seen once: not prepared yet
    for _ in range(3):
        assert rows(m, select) == [{"a": 1}]
    assert prepared(m, select) == 1
    # the table changes shape under the prepared statement: the answer follows it
    execute(m, f"ALTER TABLE {t} ADD COLUMN b text DEFAULT 'x'")
    r = q(m, select)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [{"a": 1, "b": "x"}]
    assert [c["name"] for c in r.json()["columns"]] == ["a", "b"]
    assert rows(m, select) == [{"a": 1, "b": "x"}]
    # a user's DEALLOCATE ALL does not break the statements mikcar prepared
    execute(m, "DEALLOCATE ALL")
    for _ in range(3):
        assert rows(m, select) == [{"a": 1, "b": "x"}]


@PG_ONLY
def test_postgres_prepared_statement_keyed_by_parameter_types(launch):
    m = launch(url_query="pool_max=1")
    # one SQL text, four parameter kinds: each its own prepared statement
    sql = "SELECT $1::text AS v, pg_typeof($1)::text AS t"
    for _ in range(3):
        assert rows(m, sql, [5]) == [{"v": "5", "t": "bigint"}]
        assert rows(m, sql, ["x"]) == [{"v": "x", "t": "text"}]
        assert rows(m, sql, [True]) == [{"v": "true", "t": "boolean"}]
        assert rows(m, sql, [None]) == [{"v": None, "t": "text"}]
    assert prepared(m, sql) == 3  # null and text are both left to the server
    # untyped strings still go where the column's type says, prepared or not
    t = m.tname()
    execute(m, f"CREATE TABLE {t} (d date)")
    for day in ("2024-02-27", "2024-02-28", "2024-02-29"):
        assert execute(m, f"INSERT INTO {t} VALUES ($1)", [day])["rows_affected"] == 1
    assert prepared(m, f"INSERT INTO {t} VALUES ($1)") == 1
    assert [r["d"] for r in rows(m, f"SELECT d FROM {t} ORDER BY d")] == [
        "2024-02-27", "2024-02-28", "2024-02-29"]
    # an error from one execution leaves the statement usable
    for divisor, status in ((1, 200), (1, 200), (0, 400), (1, 200)):
        r = q(m, "SELECT 10 / $1 AS v", [divisor])
        if status == 200:
            assert r.status_code == 200 and r.json()["rows"] == [{"v": 10}], r.text
        else:
            sql_error(r, 400, "postgres", "22012")


@PG_ONLY
def test_postgres_prepared_statements_per_connection_are_bounded(launch):
    m = launch(url_query="pool_max=1")
    for i in range(300):
        for _ in range(2):
            assert value(m, f"SELECT {i} AS v") == i
    n = value(m, "SELECT count(*) AS n FROM pg_prepared_statements")
    assert 200 <= n <= 256, n
    # a statement seen once after the table is full still answers
    assert value(m, "SELECT 'fresh' AS v") == "fresh"


def test_repeated_statements_follow_schema_changes(db):
    """Both backends keep compiled statements per connection; answers must follow the schema."""
    t = db.tname()
    execute(db, f"CREATE TABLE {t} (a int)")
    execute(db, f"INSERT INTO {t} VALUES (1)")
    for _ in range(8):  # every pooled connection has run it
        assert rows(db, f"SELECT * FROM {t}") == [{"a": 1}]
    execute(db, f"ALTER TABLE {t} ADD COLUMN b text DEFAULT 'x'")
    for _ in range(8):
        assert rows(db, f"SELECT * FROM {t}") == [{"a": 1, "b": "x"}]
    execute(db, f"DROP TABLE {t}")
    r = q(db, f"SELECT * FROM {t}")
    sql_error(r, 400, db.backend)
    execute(db, f"CREATE TABLE {t} (c text)")
    execute(db, f"INSERT INTO {t} VALUES ('back')")
    for _ in range(8):
        assert rows(db, f"SELECT * FROM {t}") == [{"c": "back"}]
    # many distinct statements, then the first ones again
    for i in range(150):
        assert value(db, f"SELECT {i} AS v") == i
    for i in range(10):
        assert value(db, f"SELECT {i} AS v") == i


@PG_ONLY
def test_postgres_prepare_false_and_a_session_that_loses_its_statements(launch, start_mikcar):
    m = launch(url_query="pool_max=1&prepare=false")
    for _ in range(3):
        assert value(m, "SELECT 41 + $1 AS v", [1]) == 42
    assert prepared(m, "SELECT 41 + $1 AS v") == 0
    # a session that drops mikcar's statements behind its back (as a transaction-mode pooler
    # would): the next runs still answer, and the connection stops preparing
    m = launch(url_query="pool_max=1")
    for _ in range(3):
        assert value(m, "SELECT 41 + $1 AS v", [1]) == 42
    execute(m, "DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$")
    for _ in range(3):
        assert value(m, "SELECT 41 + $1 AS v", [1]) == 42
    assert prepared(m, "SELECT 41 + $1 AS v") == 0
    # a bad value is refused at start-up
    r = subprocess.run([BIN, "--sql", "--port", "0"], capture_output=True,
                       text=True, timeout=20,
                       env={**os.environ, "DATABASE_URL": with_query(pg_url(), "prepare=maybe")})
    assert r.returncode == 2 and "prepare: expected true or false; got 'maybe'" in r.stderr, r.stderr
