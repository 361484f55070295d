"""The files a platform reads, held to the code: the Procfile, app.json, .python-version, and
the README's way of running the Procfile locally (honcho, a runner no one here wrote)."""

import json
import os
import sys
from pathlib import Path

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
    # Behind the platform's router, one proxy sets each header; the README's walkthrough sets
    # exactly the proxy settings app.json does.
    proxies = {name: v["value"] for name, v in app["env"].items() if name.startswith("PROXY_")}
    assert proxies == dict.fromkeys(
        ("PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO", "PROXY_FIX_X_PORT"), "1"
    )
    walkthrough = next(x for x in readme().splitlines() if x.startswith("heroku config:set PROXY"))
    assert walkthrough.split()[2:] == [f"{name}={value}" for name, value in proxies.items()]
    # After a deploy, the platform opens the docs.
    assert app["success_url"] == "/docs"
    assert "(https://heroku.com/deploy)" in readme()


def test_app_json_success_url_is_served(client):
    app = json.loads((ROOT / "app.json").read_text())
    assert client.get(app["success_url"]).status_code == 200


@pytest.mark.server
def test_the_readme_runs_the_procfile_locally_with_honcho(tmp_path):
    line = next(x for x in readme().splitlines() if ".venv/bin/honcho start release" in x)
    port = servers.free_port()
    url = f"sqlite:///{tmp_path}/honcho.sqlite3"
    # A shell in the checkout without the venv on its PATH, as a reader's is: the line itself
    # must put it there, for honcho and for the Procfile's flask and python.
    env = servers.clean_env(DATABASE_URL=url, PORT=port)
    env["PATH"] = os.pathsep.join(
        folder for folder in env["PATH"].split(os.pathsep) if Path(folder) != servers.BIN
    )
    env.pop("PWD", None)
    server = servers.Server(env, tmp_path / "honcho.log", ["sh", "-c", line])
    try:
        # The release ran first: the database answers, migrated.
        assert servers.fetch(server.url + "/api?data=hits").status == 200
    finally:
        server.stop()
    output = server.output()
    assert output.index("release.1 stopped (rc=0)") < output.index("web.1 started")
