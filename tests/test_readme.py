"""The README holds to the code: its configuration table names every setting, and its shell
blocks, run in order against a real server, answer what it says they answer."""

import json
import re
import shutil
import subprocess

import pytest

from . import servers


def test_every_environment_variable_is_in_the_configuration_table():
    code = "\n".join((servers.ROOT / name).read_text() for name in ("api/config.py",))
    readers = r"(?:environ\.get|env_flag|env_list|env_number)"
    read = set(re.findall(readers + r"""\(\s*["']([A-Z_]+)["']""", code))
    readme = (servers.ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Z_]+)`", table))
    assert {"RATELIMIT_PER_CLIENT", "PROXY_FIX_X_FOR", "DATABASE_URL"} <= read
    assert read - listed == set()


# Its shell blocks, run in order against a fresh server: a walkthrough that cannot drift.

COMMENTED = re.compile(r"^(?P<command>.*?)\s{2,}#\s(?P<comment>.*)$")
EXPORT = re.compile(r"^export (?P<name>[A-Z_]+)=")


def shell_blocks(readme):
    return re.findall(r"```sh\n(.*?)```", readme, re.S)


def walkthrough_lines(readme):
    """Every command of the README's shell blocks that talks to a running service, in order:
    not the set-up (make), the Procfile runners or the container image's commands, which
    other tests run (tests/test_container.py runs the image), nor a deploy."""
    for block in shell_blocks(readme):
        if re.search(r"\b(make|honcho|gunicorn|heroku|docker|podman|debootstrap)\b", block):
            continue
        yield from (line for line in block.splitlines() if line.strip())


def run_line(line, env):
    """Run one line; return what it printed, and the answer its comment shows, if any."""
    shown = None
    match = COMMENTED.match(line)
    if match and match["comment"].startswith("{"):
        line, shown = match["command"], json.loads(match["comment"])
    elif match:
        line = match["command"]
    exported = EXPORT.match(line.strip())
    command = line
    if exported:
        # Run as written, then keep the variable for the lines after, as the reader's shell does.
        command += f'\nprintf %s "${exported["name"]}"'
    result = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    if exported:
        env[exported["name"]] = result.stdout
    return result.stdout, shown


def test_every_curl_line_sends_to_base():
    curls = [
        line
        for block in shell_blocks((servers.ROOT / "README.md").read_text())
        for line in block.splitlines()
        if line.startswith("curl")
    ]
    assert len(curls) >= 8
    assert [line for line in curls if '"$BASE/' not in line] == []


@pytest.mark.server
def test_the_readme_walks_from_top_to_bottom(start_server, sqlite_url):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed; the README's examples use it")
    server = start_server(sqlite_url)
    # The reader's shell after `PORT=... make run`: the README's BASE line makes it the URL.
    env = servers.clean_env(DATABASE_URL=sqlite_url, PORT=server.port)
    lines = list(walkthrough_lines((servers.ROOT / "README.md").read_text()))
    assert len(lines) >= 10
    checked = 0
    for line in lines:
        line = line.replace(".venv/bin/flask", str(servers.BIN / "flask"))
        printed, shown = run_line(line, env)
        if shown is not None:
            assert json.loads(printed) == shown, line
            checked += 1
    assert env["BASE"] == server.url
    assert checked >= 8
