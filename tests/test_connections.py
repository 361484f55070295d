"""How many connections a worker holds at once, and what happens past that, on the real server.

Each worker serves ``WEB_MAX_CONNECTIONS`` connections at once; an idle keep-alive connection
or a request head still arriving holds one of them for 5 s at most. Up to that many, requests
are answered at once however many idle sockets are held open; beyond it, a new connection
waits in the listen queue until the server closes an idle one.
"""

import resource
import socket
import subprocess
import time
from contextlib import ExitStack

import pytest

from . import servers

pytestmark = pytest.mark.server

CAP = 32
# granian closes an idle connection, or a head still arriving, after this long.
IDLE_SECONDS = 5


def hold_idle(stack, port, count):
    """Open ``count`` connections that send nothing, as idle keep-alive clients do."""
    for _ in range(count):
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
    # Let the workers accept them all.
    time.sleep(0.5)


def health_seconds(server):
    began = time.monotonic()
    assert servers.fetch(server.url + "/healthz").status == 200
    return time.monotonic() - began


def test_idle_connections_up_to_the_cap_delay_nothing(start_server, sqlite_url):
    server = start_server(sqlite_url, WEB_CONCURRENCY=1, WEB_MAX_CONNECTIONS=CAP)
    with ExitStack() as stack:
        hold_idle(stack, server.port, CAP - 4)
        assert max(health_seconds(server) for _ in range(3)) < 1


def test_past_the_cap_a_request_waits_at_most_for_an_idle_connection_to_close(
    start_server, sqlite_url
):
    server = start_server(sqlite_url, WEB_CONCURRENCY=1, WEB_MAX_CONNECTIONS=CAP)
    with ExitStack() as stack:
        hold_idle(stack, server.port, CAP + 8)
        assert health_seconds(server) < IDLE_SECONDS + 2


def test_a_cap_past_the_open_file_limit_refuses_to_start(sqlite_url):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))

    result = subprocess.run(
        servers.procfile_command("web"),
        cwd=servers.ROOT,
        env=servers.clean_env(DATABASE_URL=sqlite_url, PORT=servers.free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=low_limit,
    )
    assert result.returncode == 3
    assert result.stderr.strip().startswith("Refusing to start: WEB_MAX_CONNECTIONS is 2048")


def test_the_soft_open_file_limit_is_raised_to_fit(sqlite_url, tmp_path):
    """A soft limit of 1024, common on Linux, would cap a worker far below the default."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2048 + 256:
        pytest.skip(f"the hard open-file limit here is {hard}")

    def soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    env = servers.clean_env(DATABASE_URL=sqlite_url, PORT=servers.free_port())
    process = subprocess.Popen(
        servers.procfile_command("web"),
        cwd=servers.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=soft_limit,
        start_new_session=True,
    )
    try:
        servers.wait_until(
            lambda: servers.fetch(f"http://127.0.0.1:{env['PORT']}/healthz").status == 200
        )
        with open(f"/proc/{process.pid}/limits") as limits:
            row = next(line for line in limits if line.startswith("Max open files"))
        assert int(row.split()[3]) >= 2048 + 256
    finally:
        process.terminate()
        process.wait(timeout=30)
