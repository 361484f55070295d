"""The files a platform reads, held to the code: the Procfile, app.json, .python-version, and
the README's way of running the Procfile locally (honcho, a runner no one here wrote)."""

import json
import re
import sys

import pytest

from api.config import Config

from . import servers

ROOT = servers.ROOT


def readme():
    return (ROOT / "README.md").read_text()


def procfile_processes():
    return [line.partition(":")[0] for line in (ROOT / "Procfile").read_text().splitlines() if line]


def test_the_procfile_lists_web_first_then_the_release():
    # Runners start the first process on the base port; a platform reads both by name.
    assert procfile_processes() == ["web", "release"]


def test_python_version_is_the_one_ci_tests():
    pinned = (ROOT / ".python-version").read_text().strip()
    assert pinned == f"{sys.version_info.major}.{sys.version_info.minor}"
    # The Makefile refuses anything older.
    makefile = (ROOT / "Makefile").read_text()
    assert f"sys.version_info < ({pinned.replace('.', ', ')})" in makefile


def test_app_json_matches_the_procfile_the_settings_and_the_readme():
    app = json.loads((ROOT / "app.json").read_text())
    assert set(app["formation"]) <= set(procfile_processes())
    assert {"url": "heroku/python"} in app["buildpacks"]
    # PostgreSQL, as the service refuses SQLite on a dyno.
    assert any(addon["plan"].startswith("heroku-postgresql") for addon in app["addons"])
    settings = vars(Config())
    table = readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name, variable in app["env"].items():
        assert name in settings, name
        assert f"`{name}`" in table, name
        assert variable["description"], name
    # Behind the platform's router, one proxy sets each header.
    for name in ("PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO", "PROXY_FIX_X_PORT"):
        assert app["env"][name]["value"] == "1"
    assert "PROXY_FIX_X_FOR=1" in readme()


@pytest.mark.server
def test_the_readme_runs_the_procfile_locally_with_honcho(tmp_path):
    line = next(x for x in readme().splitlines() if x.startswith("honcho start release"))
    port = servers.free_port()
    url = f"sqlite:///{tmp_path}/honcho.sqlite3"
    env = servers.clean_env(DATABASE_URL=url)
    command = ["sh", "-c", re.sub(r"-p \d+", f"-p {port}", line)]
    server = servers.Server({**env, "PORT": str(port)}, tmp_path / "honcho.log", command)
    try:
        # The release ran first: the database answers, migrated.
        assert servers.fetch(server.url + "/api?data=hits").status == 200
    finally:
        server.stop()
    output = server.output()
    assert output.index("release.1 stopped (rc=0)") < output.index("web.1 started")
