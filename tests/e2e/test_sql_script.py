"""POST /sql/script (SPEC §5.3, §11 "Script:"), on SQLite and on the PostgreSQL that
scripts/test-backends.sh starts (MIKCAR_TEST_POSTGRES_URL; missing → the postgres tests fail).

Fixtures and helpers come from test_sql.py: `launch` starts `mikcar --sql` on the test's backend
and `tname()` gives a table name that is dropped afterwards on PostgreSQL.
"""
import concurrent.futures
import time

import pytest

from conftest import assert_envelope
from test_sql import (backend, db, drops, execute, launch, post_many, psql, q,  # noqa: F401
                      rows, sql_error, value)

FORBIDDEN = ["eval", "WebAssembly", "ArrayBuffer", "SharedArrayBuffer", "Atomics", "DataView",
             "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array",
             "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array",
             "BigUint64Array", "setTimeout", "setInterval", "setImmediate", "queueMicrotask",
             "require", "process", "fetch", "XMLHttpRequest", "WebSocket", "Deno", "Bun",
             "print", "load", "read", "readFile", "os", "std", "module", "exports"]


def script(m, source, input=None, timeout=None, http_timeout=30, **kw):
    body = {"script": source}
    if input is not None:
        body["input"] = input
    if timeout is not None:
        body["timeout"] = timeout
    return m.post("/sql/script", json=body, timeout=http_timeout, **kw)


def result(m, source, input=None, **kw):
    r = script(m, source, input, **kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result", "queries_executed"}, body
    return body["result"]


def script_error(r, line=None):
    body = assert_envelope(r, 400, "SCRIPT_ERROR")
    assert "queries_executed" in body, body
    if line is not None:
        assert body["line"] == line, body
    return body


def accounts(m, balances):
    t = m.tname("accounts")
    execute(m, f"CREATE TABLE {t} (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    for i, b in enumerate(balances, 1):
        execute(m, f"INSERT INTO {t} (id, balance) VALUES ($1, $2)", [i, b])
    return t


def balances(m, t):
    return [r["balance"] for r in rows(m, f"SELECT balance FROM {t} ORDER BY id")]


# The README's example, verbatim apart from the table name.
TRANSFER = """// Move `amount` from one account to another; all or nothing.
export default function ({ from, to, amount }) {
  sql.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", [amount, from]);
  sql.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", [amount, to]);
  const { balance } = sql.queryOne("SELECT balance FROM accounts WHERE id = $1", [from]);
  if (balance < 0) throw new Error("Insufficient funds");
  return { from, to, amount, balance };
}
"""


# --- the three forms -------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "export default function (input) { return input.a * 2 }",
    "export default function double(input) { return input.a * 2 }",
    "export default async function (input) { await null; return input.a * 2 }",
    "export default (input) => input.a * 2",
    "export default async ({ a }) => { await Promise.resolve(); return a * 2 }",
    "// leading line comment\n/* and a block\n comment */\nexport default (input) => input.a * 2;",
    "const K = 2;\nexport default function (input) { return helper(input) }\n"
    "function helper(x) { return x.a * K }",
    "return input.a * 2",
    "const a = input.a;\nif (a) {\n  return a * 2;\n}\nreturn 0;",
    "input.a * 2",
    "const b = input.a; b * 2",
    "(async () => input.a * 2)()",
])
def test_each_form_returns_its_result(db, source):
    assert result(db, source, {"a": 21}) == 42


def test_bare_expression_is_the_query_value(db):
    assert result(db, 'sql.query("SELECT 1 AS x")') == [{"x": 1}]
    r = script(db, 'sql.query("SELECT 1 AS x")')
    assert r.json()["queries_executed"] == 1


def test_input_defaults_to_null(db):
    assert result(db, "input === null") is True
    assert result(db, "export default (i) => i") is None


def test_export_default_value_that_is_not_a_function(db):
    assert result(db, "export default { a: [1, 2] }") == {"a": [1, 2]}


def test_result_json_is_exact(db):
    source = """export default () => ({
      nested: { a: [1, "two", { three: 3 }], empty: {}, list: [] },
      n: null, u: undefined, inArray: [undefined, null, () => 1],
      date: new Date(Date.UTC(2024, 1, 29, 12, 30, 15, 250)),
      big: 12345678901234567890n, neg: -5n, float: 1.5, nan: NaN, inf: Infinity,
      text: "é — 😀 \\"quoted\\"", t: true, f: false,
    })"""
    assert result(db, source) == {
        "nested": {"a": [1, "two", {"three": 3}], "empty": {}, "list": []},
        "n": None, "inArray": [None, None, None],
        "date": "2024-02-29T12:30:15.250Z",
        "big": "12345678901234567890", "neg": "-5", "float": 1.5, "nan": None, "inf": None,
        "text": "é — 😀 \"quoted\"", "t": True, "f": False,
    }
    for top in ["undefined", "export default () => undefined", "export default async () => {}",
                "(() => {})"]:
        assert result(db, top) is None, top
    assert result(db, "10n ** 20n") == "100000000000000000000"
    assert result(db, "new Date(0)") == "1970-01-01T00:00:00.000Z"
    assert result(db, "'just a string'") == "just a string"


def test_result_that_is_not_json(db):
    body = script_error(script(db, "const o = {}; o.self = o; o"))
    assert "not JSON" in body["error"], body


def test_promises_and_async_functions_run_to_completion(db):
    source = """export default async function () {
      const log = [];
      await Promise.all([1, 2, 3].map(async (n) => { await null; log.push(n); }));
      const later = await new Promise((resolve) => Promise.resolve().then(() => resolve("done")));
      return { log, later };
    }"""
    assert result(db, source) == {"log": [1, 2, 3], "later": "done"}
    body = script_error(script(db, "export default async () => { await null; throw new Error('late') }"))
    assert body["error"] == "late"
    body = script_error(script(db, "export default () => new Promise(() => {})"))
    assert "never settled" in body["error"]


def test_sql_api(db):
    t = db.tname()
    source = f"""
      sql.execute("CREATE TABLE {t} (id INTEGER PRIMARY KEY, name TEXT, n BIGINT)");
      const inserted = sql.execute("INSERT INTO {t} (id, name, n) VALUES ($1, $2, $3), ($4, $5, $6)",
                                   [1, "a", 10n, 2, null, 2 ** 40]);
      return {{
        inserted,
        all: sql.query("SELECT id, name FROM {t} ORDER BY id"),
        one: sql.queryOne("SELECT name, n FROM {t} WHERE id = $1", [1]),
        none: sql.queryOne("SELECT name FROM {t} WHERE id = $1", [99]),
        noParams: sql.query("SELECT count(*) AS c FROM {t}")[0].c,
      }};"""
    r = script(db, source)
    assert r.status_code == 200, r.text
    assert r.json() == {"result": {
        "inserted": 2,
        "all": [{"id": 1, "name": "a"}, {"id": 2, "name": None}],
        "one": {"name": "a", "n": 10}, "none": None, "noParams": 2,
    }, "queries_executed": 6}
    assert value(db, f"SELECT count(*) FROM {t}") == 2  # committed


def test_sql_argument_errors_are_script_errors(db):
    for source in ["sql.query(1)", "sql.query()", "sql.query('SELECT 1', 'x')",
                   "sql.execute('SELECT 1', {a: 1})", "sql.query('BEGIN')",
                   "sql.execute('COMMIT')"]:
        body = script_error(script(db, source), line=1)
        assert body["queries_executed"] == 0, body


# --- transactions ----------------------------------------------------------------------------

def test_fund_transfer_commits(db):
    t = accounts(db, [100, 0])
    r = script(db, TRANSFER.replace("accounts", t), {"from": 1, "to": 2, "amount": 30})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": {"from": 1, "to": 2, "amount": 30, "balance": 70},
                        "queries_executed": 3}
    assert balances(db, t) == [70, 30]


def test_insufficient_funds_rolls_back_with_the_message(db):
    t = accounts(db, [100, 0])
    r = script(db, TRANSFER.replace("accounts", t), {"from": 1, "to": 2, "amount": 500})
    body = script_error(r, line=6)
    assert body["error"] == "Insufficient funds"
    assert body["queries_executed"] == 3
    assert balances(db, t) == [100, 0]


def test_sql_error_rolls_back_with_sql_envelope(db, backend):
    t = accounts(db, [100])
    source = f"""sql.execute("UPDATE {t} SET balance = 0");
                 sql.query("SELECT * FROM no_such_table_{t}");
                 return "unreachable";"""
    body = sql_error(script(db, source), 400, backend)
    assert body["queries_executed"] == 1
    assert balances(db, t) == [100]


def test_caught_sql_error_still_rolls_back(db, backend):
    t = accounts(db, [100])
    source = f"""sql.execute("UPDATE {t} SET balance = 0");
                 let caught = null;
                 try {{ sql.execute("INSERT INTO {t} (id, balance) VALUES (1, 5)"); }}
                 catch (e) {{ caught = e.message; }}
                 if (!caught) throw new Error("the duplicate key did not fail");
                 // a later call fails at once: the transaction is already lost
                 try {{ sql.query("SELECT 1 AS x"); }} catch (e) {{ caught = e.message; }}
                 return caught;"""
    body = sql_error(script(db, source), 409, backend)
    assert body["queries_executed"] == 1, body
    assert balances(db, t) == [100]


def test_queries_executed_counts(db):
    r = script(db, "for (let i = 0; i < 7; i++) sql.query('SELECT $1 AS i', [i]); 'ok'")
    assert r.json() == {"result": "ok", "queries_executed": 7}
    assert script(db, "1").json()["queries_executed"] == 0
    body = script_error(script(db, "sql.query('SELECT 1 AS x'); sql.execute('SELECT 2 AS y');\n"
                                   "throw new Error('after two')"), line=2)
    assert body["queries_executed"] == 2


def test_script_errors_carry_the_line_as_sent(db):
    body = script_error(script(db, "\n\n  throw new Error('three')"), line=3)
    assert body["error"] == "three"
    # the export-default rewrite and its leading comments keep lines
    source = "// one\n/* two\n three */\nexport default function (input) {\n  if (input) {\n" \
             "    throw new TypeError('six');\n  }\n}"
    body = script_error(script(db, source, {"x": 1}), line=6)
    assert body["error"] == "TypeError: six"
    source = "export default async (input) => {\n  await null;\n  null.boom;\n}"
    script_error(script(db, source), line=3)
    # top-level return form
    script_error(script(db, "const a = 1;\nreturn a.b.c;"), line=2)
    # syntax errors in each form
    script_error(script(db, "1 +;"), line=1)
    script_error(script(db, "const a = 1;\n\nreturn a +;"), line=3)
    script_error(script(db, "// c\nexport default function () {\n  return (;\n}"), line=3)
    body = script_error(script(db, "\nimport fs from 'fs'"), line=2)
    assert "import" in body["error"]
    script_error(script(db, "export const a = 1"), line=1)
    body = script_error(script(db, "throw 'a string'"))
    assert body["error"] == "a string"
    body = script_error(script(db, "throw { code: 7 }"))
    assert body["error"] == '{"code":7}'


# --- isolation -------------------------------------------------------------------------------

def test_globals_do_not_leak_between_requests(launch):
    m = launch(url_query="script_workers=1")  # one VM: every request lands on it
    assert result(m, "globalThis.leaked = 41; var declared = 1; Array.prototype.evil = 1;"
                     "Object.prototype.polluted = 1; JSON.parse = null; leaked + 1") == 42
    for _ in range(3):
        assert result(m, "[typeof leaked, typeof declared, typeof [].evil, typeof ({}).polluted,"
                         " typeof JSON.parse]") == ["undefined"] * 4 + ["function"]


def test_forbidden_globals_are_undefined(db):
    checks = ", ".join(f'"{g}": typeof globalThis["{g}"]' for g in FORBIDDEN)
    got = result(db, f"({{{checks}}})")
    assert got == {g: "undefined" for g in FORBIDDEN}
    for source in ["Function('return 1')()", "new Function('a', 'return a')(1)",
                   "(function(){}).constructor('return 1')()",
                   "(async function(){}).constructor('return 1')()",
                   "Object.getPrototypeOf(function*(){}).constructor('yield 1')"]:
        body = script_error(script(db, source))
        assert "EvalError" in body["error"], body
    # what a script may use is there
    assert result(db, "[typeof sql.query, typeof sql.execute, typeof sql.queryOne, typeof "
                      "console.log, typeof JSON.stringify, typeof Math.max, typeof Map]") == \
        ["function"] * 7


def test_console_log_goes_to_the_debug_log_with_the_trace_id(launch):
    m = launch(["--log-level", "debug"])
    trace = "script-trace-0123456789"
    r = script(m, "console.log('hello from', {a: 1}, 42); 1", headers={"x-trace-id": trace})
    assert r.status_code == 200, r.text
    deadline = time.time() + 5
    while time.time() < deadline and "hello from" not in m.output():
        time.sleep(0.05)
    line = next(ln for ln in m.output().splitlines() if "hello from" in ln)
    assert 'hello from {"a":1} 42' in line and trace in line and "debug" in line, line


# --- limits ----------------------------------------------------------------------------------

def test_infinite_loop_times_out_and_rolls_back_20_times(launch, backend):
    m = launch(url_query="script_workers=2" + ("&pool_max=2" if backend == "postgres" else ""))
    t = accounts(m, [100])
    source = f"sql.execute('UPDATE {t} SET balance = 0'); while (true) {{}}"
    for i in range(20):
        start = time.monotonic()
        r = script(m, source, timeout=0.3)
        elapsed = time.monotonic() - start
        body = assert_envelope(r, 408, "SCRIPT_TIMEOUT")
        assert body["queries_executed"] == 1
        assert elapsed < 3, elapsed
        assert balances(m, t) == [100], i  # rolled back, and the server still answers
    # neither a worker nor a connection leaked: more scripts than workers and connections at once
    answers = post_many(m, [{"script": f"sql.query('SELECT balance FROM {t}')[0].balance"}] * 8,
                        path="/sql/script")
    assert [r.status_code for r, _ in answers] == [200] * 8, [r.text for r, _ in answers]
    assert all(r.json()["result"] == 100 for r, _ in answers)
    if backend == "postgres":
        assert psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mikcar' AND "
                    "state LIKE 'idle in transaction%'") == "0"


def test_loop_that_catches_cannot_escape_the_time_limit(db):
    r = script(db, "for (;;) { try { while (true) {} } catch (e) {} }", timeout=0.3)
    assert_envelope(r, 408, "SCRIPT_TIMEOUT")
    r = script(db, "export default async () => { await null; for (;;) {} }", timeout=0.3)
    assert_envelope(r, 408, "SCRIPT_TIMEOUT")
    assert result(db, "1 + 1") == 2


def test_default_time_limit_is_five_seconds(db):
    start = time.monotonic()
    r = script(db, "while (true) {}")
    elapsed = time.monotonic() - start
    assert_envelope(r, 408, "SCRIPT_TIMEOUT")
    assert 4.5 < elapsed < 8, elapsed


def test_timeout_override_is_bounded(launch):
    m = launch(url_query="script_timeout=1s&script_max_timeout=2s")
    assert_envelope(script(m, "1", timeout=3), 422, "UNPROCESSABLE")
    assert_envelope(script(m, "1", timeout=-1), 422, "UNPROCESSABLE")
    assert_envelope(script(m, "1", timeout="soon"), 422, "UNPROCESSABLE")
    start = time.monotonic()
    assert_envelope(script(m, "while (true) {}"), 408, "SCRIPT_TIMEOUT")
    assert time.monotonic() - start < 3
    start = time.monotonic()
    assert_envelope(script(m, "while (true) {}", timeout="1500ms"), 408, "SCRIPT_TIMEOUT")
    assert 1.4 < time.monotonic() - start < 4


def test_timeout_message_names_what_stopped_the_script(launch):
    body = assert_envelope(script(launch(), "while (true) {}", timeout=0.3), 408, "SCRIPT_TIMEOUT")
    assert "its time limit of 300 ms" in body["error"], body
    m = launch(["--timeout", "2s"])
    body = assert_envelope(script(m, "while (true) {}"), 408, "SCRIPT_TIMEOUT")
    assert "the request deadline (--timeout)" in body["error"], body


def test_slow_statement_is_bounded_by_the_script_time(db, backend):
    t = accounts(db, [100])
    slow = ("SELECT pg_sleep(10)" if backend == "postgres" else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")
    start = time.monotonic()
    r = script(db, f"sql.execute('UPDATE {t} SET balance = 1'); sql.query(\"{slow}\")",
               timeout=0.5)
    assert time.monotonic() - start < 3
    assert_envelope(r, 408, "SCRIPT_TIMEOUT")
    assert balances(db, t) == [100]
    assert result(db, "sql.query('SELECT 1 AS one')") == [{"one": 1}]


@pytest.mark.parametrize("bomb", [
    "const a = []; while (true) a.push({ i: a.length, s: 'item ' + a.length });",
    "const a = []; while (true) a.push('x'.repeat(1 << 20) + a.length);",
    "let s = 'x'; while (true) s += s;",
])
def test_memory_bomb_is_stopped_and_the_server_survives(db, bomb):
    t = accounts(db, [100])
    r = script(db, f"sql.execute('UPDATE {t} SET balance = 0'); {bomb}")
    body = assert_envelope(r, 413, "SCRIPT_MEMORY")
    assert body["queries_executed"] == 1
    assert balances(db, t) == [100]
    assert result(db, "[1, 2, 3].map((x) => x * 2)") == [2, 4, 6]


def test_sql_call_and_row_caps(db):
    body = script_error(script(db, "for (let i = 0; i <= 10000; i++) sql.query('SELECT 1 AS x')",
                               timeout=30))
    assert "10000 SQL calls" in body["error"], body
    assert body["queries_executed"] == 10000
    body = script_error(script(db, "sql.query('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                                   "SELECT x + 1 FROM c WHERE x < 100001) SELECT x FROM c')"))
    assert "100000 rows" in body["error"], body


def test_bad_bodies(db):
    assert_envelope(db.post("/sql/script", data="{", headers={"content-type": "application/json"}),
                    400, "BAD_REQUEST")
    assert_envelope(db.post("/sql/script", json={"input": 1}), 422, "UNPROCESSABLE")
    assert_envelope(db.post("/sql/script", json={"script": 1}), 422, "UNPROCESSABLE")
    assert_envelope(db.post("/sql/script", json=[]), 422, "UNPROCESSABLE")
    # odd but valid scripts answer, never crash
    assert result(db, "") is None
    assert result(db, "'\\u0000'") == "\u0000"
    assert result(db, "'a\u0000b'.length") == 3
    for odd in ["export default", "`${", "/*", "}", "export default async", "'\\ud800'"]:
        r = script(db, odd)
        assert r.status_code in (200, 400), r.text
    assert result(db, "1") == 1


def test_100_concurrent_scripts(db):
    t = accounts(db, [0])
    bodies = [{"script": "return input.n * 2", "input": {"n": i}} for i in range(50)]
    bodies += [{"script": f"sql.execute('UPDATE {t} SET balance = balance + 1'); "
                          f"sql.queryOne('SELECT 1 AS one').one"}] * 50
    answers = post_many(db, bodies, path="/sql/script", workers=100)
    assert [r.status_code for r, _ in answers] == [200] * 100, \
        [r.text for r, _ in answers if r.status_code != 200][:3]
    assert [r.json()["result"] for r, _ in answers[:50]] == [i * 2 for i in range(50)]
    assert balances(db, t) == [50]


@pytest.mark.parametrize("source", [
    "({ toJSON() { while (true) {} } })",                      # the result's conversion
    "new Proxy({}, { ownKeys() { while (true) {} } })",
    "({ get then() { while (true) {} } })",                    # settling a thenable
    "({ then() { while (true) {} } })",
    "throw { get message() { while (true) {} } }",             # reading the thrown value
    "throw { toString() { while (true) {} } }",
])
def test_script_code_run_by_the_conversions_is_under_the_time_limit(db, source):
    start = time.monotonic()
    assert_envelope(script(db, source, timeout=0.3), 408, "SCRIPT_TIMEOUT")
    assert time.monotonic() - start < 3
    assert result(db, "1 + 1") == 2


def test_results_that_cannot_be_json(db):
    body = script_error(script(db, "({ get a() { throw new Error('getter') } })"))
    assert body["error"] == "the script's result is not JSON: getter"
    body = script_error(script(db, "let o = []; for (let i = 0; i < 100000; i++) o = [o]; o"))
    assert "not JSON" in body["error"]
    assert result(db, "Symbol('s')") is None
    assert len(result(db, "'x'.repeat(5e6)")) == 5_000_000


def test_a_runaway_script_does_not_block_other_requests(launch):
    m = launch(url_query="script_workers=2")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        runaway = pool.submit(script, m, "while (true) {}", None, 3)
        time.sleep(0.3)
        start = time.monotonic()
        assert value(m, "SELECT 7 AS seven") == 7
        assert result(m, "sql.queryOne('SELECT 8 AS eight').eight") == 8
        assert time.monotonic() - start < 1.5
        assert not runaway.done()
        assert_envelope(runaway.result(), 408, "SCRIPT_TIMEOUT")
