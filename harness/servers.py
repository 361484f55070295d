"""The Procfile's processes, run for real: the release, the web server, and a token minted
with the CLI exactly as an operator would. The tests and ``make bench`` both start them here."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from api.resources import HEALTH_PATH

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The app's own settings, which a server started here gets only when they are given to it:
# a developer's shell must not change what a test or the bench measures.
APP_SETTINGS = ("DATABASE_", "WEB_", "RATELIMIT_", "PROXY_FIX_")
SERVER_SETTINGS = (
    "HOST",
    "ACCESS_LOG",
    "REQUEST_BODY_TIMEOUT",
    "GRACEFUL_TIMEOUT",
    "TRUSTED_HOSTS",
    "PUBLIC_URL",
    "COUNTER_HOURS_RETENTION_DAYS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_ENABLED",
    "METRICS_PUBLIC_FROM",
    "PROMETHEUS_MULTIPROC_DIR",
)


def procfile_command(process="web"):
    """The Procfile's command for one process type, split as a shell would."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return shlex.split(command)
    raise LookupError(f"no {process!r} line in the Procfile")


def free_port():
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**overrides):
    """This process's environment without the app's settings, plus the given ones.

    Rate limiting is off unless asked for: load tests and the bench send thousands of requests
    from one address on purpose.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(APP_SETTINGS) and k not in SERVER_SETTINGS
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RATELIMIT_ENABLED"] = "false"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run_release(env):
    """Run the Procfile's release line, as a platform does before starting web processes."""
    subprocess.run(
        procfile_command("release"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=120
    )


def mint_token(env, name):
    """Create a token with the CLI, exactly as an operator would, and return the secret."""
    result = subprocess.run(
        ["flask", "--app", "api", "token", "create", name],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip().splitlines()[-1]


def serve_released(folder, token_name, port=None, **settings):
    """A server on a fresh SQLite file in folder, released and holding one token minted by the
    CLI, as an operator would set it up; the token is the server's .token. The port is a free
    one unless given, for settings that name the server's own address."""
    env = clean_env(DATABASE_URL=f"sqlite:///{folder}/server.sqlite3", **settings)
    run_release(env)
    token = mint_token(env, token_name)
    server = Server({**env, "PORT": str(port or free_port())}, Path(folder) / "server.log")
    server.token = token
    return server


class Server:
    """A server's main process and its workers, in a session of their own so that stopping
    it stops every one of them; by default the Procfile's web process."""

    def __init__(self, env, log_path, command=None, cwd=ROOT, ready_path=HEALTH_PATH):
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command or procfile_command("web"),
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(ready_path)
        except BaseException:
            # Not ready, or interrupted while starting: nothing may be left running.
            self.stop()
            raise

    def wait_ready(self, path=HEALTH_PATH, timeout=60):
        """Block until path answers 200, or fail with the server's own output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.output()[-3000:]}")

    def worker_pids(self):
        """The pids of the main process's live workers, read from /proc."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name in parentheses may hold spaces; the fields after it do not.
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == self.process.pid and state != "Z":
                pids.add(int(entry.name))
        return pids

    def output(self):
        """Everything the server has written so far, also after it stopped."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text, timeout=10):
        """Wait until the server has written text: a request is logged after it is answered."""
        wait_until(lambda: text in self.output(), timeout)

    def kill(self):
        """SIGKILL the main process and every worker at once: the harshest crash there is."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout=30):
        """SIGTERM the whole session, as a platform does on a deploy; SIGKILL what outlives it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._log.close()


def wait_until(condition, timeout=20, interval=0.05):
    """Poll until condition() is true; fail if it never becomes so."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {timeout} s: {condition}"
        time.sleep(interval)
