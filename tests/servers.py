"""Real servers started from the Procfile's web line (granian), for tests that need processes."""

import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

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
        if not k.startswith(("DATABASE_", "WEB_", "RATELIMIT_", "PROXY_FIX_"))
        and k not in ("HOST", "ACCESS_LOG", "REQUEST_BODY_TIMEOUT", "GRACEFUL_TIMEOUT")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RATELIMIT_ENABLED"] = "false"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Answer(NamedTuple):
    """What a client got: status None means no answer at all (refused, reset, timed out)."""

    status: int | None
    body: bytes = b""
    retry_after: str | None = None


def exchange(port, data, half_close=False, timeout=15):
    """Send raw bytes and return the server's first answer, read up to its Content-Length or
    to the end of the connection. A half-close ends a body early; hyper, like most servers,
    drops a connection whose client half-closes after a whole request, so only tests of
    cut-off bodies use it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            head, found, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if found and length and len(body) >= int(length.group(1)):
                break
    return answer


def parse_answer(answer):
    """(status, headers with lowercase names, body) of a raw answer; (None, {}, b"") for none."""
    if not answer:
        return None, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body


def fetch(url, headers=None, timeout=30):
    """GET url; any HTTP status is an answer, only a failed connection is not."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Answer(r.status, r.read(), r.headers.get("Retry-After"))
    except urllib.error.HTTPError as e:
        with e:
            return Answer(e.code, e.read(), e.headers.get("Retry-After"))
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return Answer(None)


class Load:
    """Clients sending GETs in a loop, round-robin over URLs, keeping every answer in order."""

    def __init__(self, urls, clients=8):
        self.urls = list(urls)
        self.answers = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, offset):
        n = offset
        while not self._stop.is_set():
            self.answers.append(fetch(self.urls[n % len(self.urls)]))
            n += 1

    def wait_for(self, more, status=200, timeout=60):
        """Block until `more` further answers with this status have arrived."""
        target = self.count(status) + more
        deadline = time.monotonic() + timeout
        while self.count(status) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count(status)} of {target} answers were {status}")
            time.sleep(0.01)

    def count(self, status):
        return sum(1 for a in list(self.answers) if a.status == status)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stop sending and wait for the requests in flight to finish."""
        self._stop.set()
        for thread in self._threads:
            thread.join()


def run_release(env):
    """Run the Procfile's release line, as a platform does before starting web processes."""
    subprocess.run(
        procfile_command("release"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=120
    )


class Server:
    """One server process and its workers, started from the Procfile's web line."""

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
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.output()}")

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


def wait_until(condition, timeout=20, interval=0.05):
    """Poll until condition() is true; fail the test if it never becomes so."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {timeout} s: {condition}"
        time.sleep(interval)


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
