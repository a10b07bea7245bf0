"""GET /openapi.json (SPEC §2.5, §11): an OpenAPI 3.1 document of every mounted route, served
without the token, valid against the OpenAPI 3.1 schema, and true to the router."""
import gzip
import json
import os
import subprocess

import pytest
import requests

from conftest import TOKEN

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "src")
VALIDATOR = os.path.join(HERE, "openapi")
SERVICES = ["storage", "kv", "sql", "queue"]
METHODS = {"get", "put", "post", "delete", "head", "patch", "options"}


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    from conftest import Mikcar
    m = Mikcar(["--all"], data_dir=str(tmp_path_factory.mktemp("openapi")))
    yield m
    m.stop()


@pytest.fixture(scope="module")
def doc(everything):
    resp = requests.get(everything.url("/openapi.json"))  # no token
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def test_served_without_token_even_when_one_is_set(everything, doc):
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "mikcar"
    # The token is still needed elsewhere.
    assert requests.get(everything.url("/metrics")).status_code == 401


def test_head_answers_like_get_without_a_body(everything):
    resp = requests.head(everything.url("/openapi.json"))
    assert resp.status_code == 200 and resp.content == b""
    assert int(resp.headers["content-length"]) > 10000


def test_valid_openapi_31_with_resolvable_refs(doc, tmp_path):
    if not os.path.isdir(os.path.join(VALIDATOR, "node_modules")):
        pytest.fail("the validator is not installed: run scripts/test.sh "
                    "(it runs npm ci --prefix tests/e2e/openapi)")
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    check = subprocess.run(["node", os.path.join(VALIDATOR, "validate.mjs"), str(path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_operation_is_documented(doc):
    ids = set()
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary"), f"{where} has no summary"
        assert op["operationId"] not in ids, f"{where}: operationId repeated"
        ids.add(op["operationId"])
        assert any(s.startswith("2") for s in op["responses"]), f"{where}: no success response"
        assert "default" in op["responses"]
        for name in [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]:
            params = [p for p in op.get("parameters", []) if p["in"] == "path" and p["name"] == name]
            assert len(params) == 1 and params[0]["required"] is True, f"{where}: path parameter {name}"
        for status, resp in op["responses"].items():
            if status[0] in "45":
                assert "schema" in resp["content"]["application/json"], f"{where} {status}"
    errors = [resp["content"]["application/json"]["schema"]
              for _, _, op in operations(doc) for status, resp in op["responses"].items()
              if status[0] in "45"]
    assert errors.count({"$ref": "#/components/schemas/Error"}) > 100


def test_every_service_route_is_in_the_document(doc):
    """Each fragment in src/<service>/openapi.json lands under its mount prefix, whole."""
    for service in SERVICES:
        with open(os.path.join(SRC, service, "openapi.json")) as f:
            fragment = json.load(f)
        for pattern, item in fragment["paths"].items():
            path = f"/{service}" + pattern.replace("{*", "{")
            assert path in doc["paths"], path
            for method, op in item.items():
                served = doc["paths"][path][method]
                assert served["summary"] == op["summary"]
                assert served["tags"] == [service]
        for name in fragment.get("schemas", {}):
            assert name.startswith(service.capitalize()), name
            assert name in doc["components"]["schemas"]


def test_the_router_answers_every_documented_operation(everything, doc):
    """A request to each documented path reaches a handler: never the router's 404 or 405."""
    for path, method, _ in operations(doc):
        url = everything.url(path.replace("{", "x").replace("}", ""))
        try:
            resp = everything.session.request(method.upper(), url, timeout=3)
        except requests.exceptions.ReadTimeout:
            continue  # a long-poll waiting: a handler took it
        assert resp.status_code != 405, f"{method.upper()} {path}"
        if resp.status_code == 404 and method != "head":
            assert "no route" not in resp.json()["error"], f"{method.upper()} {path}"


def test_security_follows_the_route_table(doc):
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": "The token of --auth-token, SIDECAR_TOKEN or AUTH_TOKEN, or a scoped "
                       "token of --config"}
    paths = doc["paths"]
    assert paths["/health"]["get"]["security"] == []
    assert paths["/openapi.json"]["get"]["security"] == []
    assert "security" not in paths["/metrics"]["get"]  # the document's default: the token
    assert "401" in paths["/kv/get/{key}"]["get"]["responses"]
    assert "403" in paths["/kv/get/{key}"]["get"]["responses"]  # a scoped token's limits
    # Presigned storage URLs work without the token.
    assert paths["/storage/object/{path}"]["get"]["security"] == [{}, {"bearer": []}]


def test_metrics_public_is_reflected(start_mikcar):
    m = start_mikcar(["--kv", "--metrics-public"])
    doc = m.get("/openapi.json").json()
    assert doc["paths"]["/metrics"]["get"]["security"] == []
    assert "/storage/list" not in doc["paths"]  # only what is mounted


def test_without_a_token_nothing_asks_for_one(start_mikcar):
    m = start_mikcar(["--kv", "--storage", "--no-auth"], token=None)
    doc = requests.get(m.url("/openapi.json")).json()
    assert doc["security"] == [] and "securitySchemes" not in doc["components"]
    for path, method, op in operations(doc):
        assert "401" not in op["responses"] and "security" not in op, f"{method} {path}"
        if path.startswith("/kv"):  # storage lists its own 403s (presigned URLs, symlinks)
            assert "403" not in op["responses"], f"{method} {path}"


def test_gzip_when_accepted(everything):
    plain = requests.get(everything.url("/openapi.json"), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = requests.get(everything.url("/openapi.json"), headers={"Accept-Encoding": "gzip"},
                          stream=True)
    assert packed.headers["content-encoding"] == "gzip"
    raw = packed.raw.read(decode_content=False)
    assert len(raw) < len(plain.content) / 3
    assert gzip.decompress(raw) == plain.content


def test_a_custom_sidecar_is_documented_by_its_fragment():
    """examples/custom_sidecar: OpenApi() describes /greet; /count is listed without one; its
    Collect() adds to /metrics; its scoped token is held to its scope."""
    from conftest import BIN
    example = os.path.join(os.path.dirname(BIN), "..", "examples", "custom_sidecar")
    proc = subprocess.Popen([example, "0"], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip().rsplit(":", 1)[1]
        doc = requests.get(f"http://127.0.0.1:{port}/openapi.json").json()
        # Its Collect() adds a family to /metrics.
        auth = {"Authorization": "Bearer demo"}
        requests.post(f"http://127.0.0.1:{port}/hello/count", headers=auth)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", headers=auth).text
        assert "# TYPE hello_counts_total counter\nhello_counts_total 1\n" in text, text
        # Its scoped read-only token: ReadOnly() routes, names under its prefix.
        guest = {"Authorization": "Bearer guest"}
        assert requests.get(f"http://127.0.0.1:{port}/hello/greet/guest-1", headers=guest).ok
        for method, path in [("GET", "/hello/greet/root"), ("POST", "/hello/count"),
                             ("GET", "/metrics")]:
            r = requests.request(method, f"http://127.0.0.1:{port}{path}", headers=guest)
            assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", (path, r.text)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    greet = doc["paths"]["/hello/greet/{name}"]["get"]
    assert greet["summary"] == "Greet someone"
    assert greet["parameters"][0]["description"] == "At most 64 bytes"
    assert greet["tags"] == ["hello"] and "401" in greet["responses"]
    count = doc["paths"]["/hello/count"]["post"]
    assert "summary" not in count and count["operationId"] == "post_hello_count"
