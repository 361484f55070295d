"""Tools no one here wrote, on the spec a real server serves: two linters and three clients.

Redocly and Spectral must find nothing outside the reasoned exceptions in tools/redocly.yaml
and tools/.spectral.yaml; openapi-typescript's types must compile a call of every operation
(tools/ts/calls.ts); openapi-python-client's package must import, pass mypy --strict, and
call every operation against the server, unedited; the Postman collection openapi-to-postmanv2
makes of the spec must run whole under newman. The Node tools are pinned in tools/ and
installed by the Makefile; the Python ones in requirements-dev.txt.
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from api.catalogue import KINDS
from harness import servers

TOOLS = servers.ROOT / "tools"
BUILD = TOOLS / "build"
NPX = ("npx", "--no-install")

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One real server for the module, its spec in tools/build/, and a token."""
    server = servers.serve_released(tmp_path_factory.mktemp("clients"), "generated-client")
    try:
        BUILD.mkdir(exist_ok=True)
        with servers.urllib.request.urlopen(server.url + "/api/openapi.json") as answer:
            (BUILD / "openapi.json").write_bytes(answer.read())
        yield server, server.token
    finally:
        server.stop()


@pytest.fixture(scope="module")
def node_tools():
    if shutil.which("npx") is None or not (TOOLS / "node_modules" / ".installed").exists():
        pytest.skip("the pinned Node tools are not installed: `make test` installs them (npm)")


def run(command, cwd=TOOLS, timeout=180, check=True):
    """Run a tool; its stdout and stderr together, failing with both if it failed. The venv's
    commands come first on the PATH: the Python generator formats its output with ruff."""
    env = {**os.environ, "PATH": f"{servers.BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 or not check, f"{' '.join(command)}:\n{output}"
    return output


def test_redocly_finds_nothing(live, node_tools):
    output = run([*NPX, "redocly", "lint", "build/openapi.json"])
    assert "Your API description is valid" in output


def test_spectral_finds_nothing(live, node_tools):
    output = run([*NPX, "spectral", "lint", "--fail-severity=hint", "build/openapi.json"])
    assert "No results with a severity of 'hint' or higher found" in output


def test_typescript_types_compile_a_call_of_every_operation(live, node_tools):
    run([*NPX, "openapi-typescript", "build/openapi.json", "-o", "build/api.d.ts"])
    run([*NPX, "tsc", "-p", "tsconfig.json"])
    calls = (TOOLS / "ts" / "calls.ts").read_text()
    spec = json.loads((BUILD / "openapi.json").read_text())
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f'{method.upper()}("{path}"' in calls, (method, path)


def test_newman_runs_every_operation_of_the_postman_collection(tmp_path, node_tools):
    # The collection's requests go to the spec's server, which is PUBLIC_URL when it is set:
    # here the server's own address. The document's security lists "no token" first, so the
    # collection sends none.
    port = servers.free_port()
    server = servers.serve_released(
        tmp_path, "postman", port=port, PUBLIC_URL=f"http://127.0.0.1:{port}"
    )
    try:
        with servers.urllib.request.urlopen(server.url + "/api/openapi.json") as answer:
            spec = json.load(answer)
        document = tmp_path / "openapi.json"
        document.write_text(json.dumps(spec))
        collection, report = tmp_path / "collection.json", tmp_path / "newman.json"
        run([*NPX, "openapi2postmanv2", "-s", str(document), "-o", str(collection)])
        run(
            [*NPX, "newman", "run", str(collection), "--reporters", "cli,json"]
            + ["--reporter-json-export", str(report)]
        )
    finally:
        server.stop()
    assert spec["servers"][0]["url"] == server.url
    outcome = json.loads(report.read_text())["run"]
    operations = [(m, p) for p, methods in spec["paths"].items() for m in methods]
    assert outcome["stats"]["requests"] == {"total": len(operations), "pending": 0, "failed": 0}
    assert outcome["failures"] == []
    statuses = {
        operation["summary"]: set(operation["responses"])
        for methods in spec["paths"].values()
        for operation in methods.values()
    }
    for execution in outcome["executions"]:
        # Each request reached the server and got an answer its operation declares.
        assert "requestError" not in execution, execution["requestError"]
        answered = str(execution["response"]["code"])
        assert answered in statuses[execution["item"]["name"]], execution["item"]["name"]


@pytest.fixture(scope="module")
def generated(live, tmp_path_factory):
    """The Python client openapi-python-client writes from the live spec, unedited."""
    folder = tmp_path_factory.mktemp("generated")
    bin_dir = servers.BIN
    run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(BUILD / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(folder / "rest_api_client"),
        ],
        cwd=folder,
    )
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.startswith("rest_api_client")]:
            del sys.modules[name]


# What mypy 2.4 says of client.py, the generator's own template, which is the same whatever
# the spec: it forwards `*args: object` to httpx's typed __exit__ and __aexit__.
TEMPLATE_ERRORS = re.compile(
    r'rest_api_client/client\.py:\d+: error: Argument 1 to "__a?exit__" of "(Async)?Client" '
    r"has incompatible type .*\[arg-type\]"
)


def test_the_generated_client_passes_mypy_strict(generated):
    output = run(
        [str(servers.BIN / "mypy"), "--strict", "rest_api_client"], cwd=generated, check=False
    )
    errors = [line for line in output.splitlines() if ": error: " in line]
    # Every module the spec shapes (the operations and the models) is clean.
    assert [line for line in errors if not TEMPLATE_ERRORS.fullmatch(line)] == [], output


def test_the_generated_client_calls_every_operation(live, generated):
    server, token = live
    client_module = importlib.import_module("rest_api_client")
    models = importlib.import_module("rest_api_client.models")
    data, meta, stats = (
        SimpleNamespace(
            **{name: importlib.import_module(f"rest_api_client.api.{tag}.{name}") for name in names}
        )
        for tag, names in (
            ("data", ("get_data_query", "post_data_query", "get_typed_data", "get_teapot")),
            ("meta", ("get_health", "get_openapi")),
            ("stats", ("get_stats",)),
        )
    )
    public = client_module.Client(base_url=server.url)
    holder = client_module.AuthenticatedClient(base_url=server.url, token=token)
    with public, holder:
        calls_every_operation(public, holder, models, data, meta, stats)


def calls_every_operation(public, holder, models, data, meta, stats):
    def parsed(module, client, *args, **kwargs):
        answer = module.sync_detailed(*args, client=client, **kwargs)
        return answer.status_code, answer.parsed

    status, pizza = parsed(data.get_data_query, public, data=models.GetDataQueryData("pizza"))
    assert (status, pizza.type_, pizza.content) == (200, "Pizza", KINDS["pizza"].produce())
    status, refused = parsed(data.get_data_query, public, data=models.GetDataQueryData("errors"))
    assert (status, type(refused).__name__) == (401, "Error")
    status, errors = parsed(data.get_typed_data, holder, models.GetTypedDataKind("errors"))
    assert (status, type(errors).__name__) == (200, "ErrorCount")
    assert isinstance(errors.content, int)

    status, query_only = parsed(data.post_data_query, public, data=models.PostDataQueryData("1"))
    assert (status, type(query_only).__name__) == (200, "Data")
    status, json_body = parsed(
        data.post_data_query,
        public,
        body=models.PostDataQueryJsonBody(data=models.PostDataQueryJsonBodyData("hits")),
    )
    assert (status, type(json_body).__name__) == (200, "HitCount")
    status, form_body = parsed(
        data.post_data_query,
        public,
        body=models.PostDataQueryDataBody(data=models.PostDataQueryDataBodyData("people")),
    )
    assert (status, type(form_body).__name__) == (200, "People")

    assert parsed(data.get_teapot, public)[0] == 418
    status, traffic = parsed(stats.get_stats, public)
    assert status == 200 and traffic.content.totals.hits > 0
    status, health = parsed(meta.get_health, public)
    assert (status, health.status) == (200, models.HealthStatus.OK)
    status, document = parsed(meta.get_openapi, public)
    assert (status, document.openapi) == (200, "3.1.0")
