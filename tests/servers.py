"""Real gunicorn servers started from the Procfile's web line, for tests that need processes."""

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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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
    """The test process's environment without the app's settings, plus the given ones.

    Rate limiting is off unless a test turns it on: load tests send thousands of requests
    from one address on purpose.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "GUNICORN_", "RATELIMIT_", "PROXY_FIX_"))
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


class Server:
    """One gunicorn master and its workers, started from the Procfile's web line."""

    def __init__(self, env, log_path):
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            procfile_command("web"),
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout=30):
        """Block until /healthz answers, or fail with the server's own output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become ready:\n{self.output()}")

    def output(self):
        """Everything the server has written so far, also after it stopped."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self):
        """SIGKILL the master and every worker at once: the harshest crash there is."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self):
        """Shut down gracefully, as a platform does on a deploy."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._log.close()
