"""The servers and databases ``make bench`` runs, and what it reads of them: CPU time, access
logs, counters, the machine."""

import collections
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from api import config, create_app, storage
from api.resources import HEALTH_PATH
from harness import servers

from .settings import ROOT, say


class Server(servers.Server):
    """A server under test, and what the bench reads of it: CPU time and its access log."""

    def __init__(self, name, command, env, log_dir, cwd=ROOT, ready_path=HEALTH_PATH):
        self.name = name
        # Read as the service reads it.
        self.logs_access = config.flag(env.get("ACCESS_LOG"), True)
        super().__init__(env, Path(log_dir) / f"{name}.log", command, cwd, ready_path)

    def log_mark(self):
        """Where the log ends now, so that a later count reads only what was written since."""
        return self.log_path.stat().st_size

    def answered_since(self, mark, path):
        """The GET requests for path the access log shows after mark: ``{status: count}``."""
        return answered_in(self.log_path, mark, path)

    def cpu_seconds(self):
        """User and system CPU the main process and its workers have used so far."""
        return cpu_seconds([self.process.pid, *children(self.process.pid)])


def answered_in(log_path, mark, path):
    """The GET requests for path a combined-format access log shows after byte ``mark``, by
    status: ``{status: count}``."""
    line = re.compile(rb'"GET ' + re.escape(path.encode()) + rb' HTTP/1\.1" (\d{3}) ')
    with open(log_path, "rb") as log:
        log.seek(mark)
        return collections.Counter(int(status) for status in line.findall(log.read()))


def cpu_seconds(pids):
    """User and system CPU these processes have used so far, all their threads included."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime and stime, the 14th and 15th fields of stat(5), counted after the name.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds():
    """CPU used so far by every PostgreSQL process on this machine, when it runs here."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return cpu_seconds(pids)


def children(pid):
    """The direct children of a process: a server's workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def ensure_wrk():
    """Install Debian's wrk when it is missing and we may; otherwise say how."""
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"]).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        sys.exit("wrk is not installed: run `sudo apt-get install wrk`, then `make bench` again")
    say("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("apt-get did not install wrk")


def database_kind():
    """Which database the bench runs on: PostgreSQL when BENCH_DATABASE_URL names a server."""
    return "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite"


class Database:
    """A fresh database for this run: a SQLite file, or a new database on a PostgreSQL server."""

    def __init__(self, tmp, label):
        self.kind = database_kind()
        self._admin = None
        if self.kind == "sqlite":
            self.url = f"sqlite:///{tmp}/bench-{label}.sqlite3"
            return
        admin_url = sa.make_url(config.database_url(os.environ["BENCH_DATABASE_URL"]))
        self.name = f"bench_{label}_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:6]}"
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        self.url = admin_url.set(database=self.name).render_as_string(hide_password=False)

    def drop(self):
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


class Counters:
    """Reads the counters straight from the database, outside the servers under test."""

    def __init__(self, url):
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": url})

    def read(self, name="hits"):
        with self.app.app_context():
            return int(storage.read_counter(name))

    def usage_counter(self, token_name):
        """The counter of the live token ``token_name``'s own requests."""
        with self.app.app_context():
            rows = storage.list_tokens()
        (found,) = [row.id for row, *_ in rows if row.name == token_name and not row.revoked_at]
        return storage.usage_counter(found)

    def settled(self, name="hits"):
        """The count once requests still in flight have finished: two equal reads in a row."""
        last = self.read(name)
        for _ in range(50):
            time.sleep(0.2)
            now = self.read(name)
            if now == last:
                return now
            last = now
        raise RuntimeError(f"the {name} counter was still moving 10 s after the load stopped")

    def close(self):
        with self.app.app_context():
            storage.db.engine.dispose()


def machine():
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk_version.splitlines() or ["wrk"])[0].split(" [")[0],
    }


def open_database(tmp, label, databases):
    """A fresh database of the bench's kind, dropped when the bench ends."""
    database = Database(tmp, label)
    databases.append(database)
    return database


def release(database):
    """Migrate a database as the release phase does; the environment its servers run with.

    The same sizing for every server: WEB_CONCURRENCY and WEB_THREADS from this shell, as a
    dyno's environment would give them; the database and rate limiting are the bench's own.
    """
    carried = {k: os.environ[k] for k in ("WEB_CONCURRENCY", "WEB_THREADS") if k in os.environ}
    app_env = servers.clean_env(DATABASE_URL=database.url, RATELIMIT_ENABLED="false", **carried)
    servers.run_release(app_env)
    return app_env


def launch(tmp, started, name, command, env, ready_path=HEALTH_PATH, cwd=ROOT):
    """Start a server on a free port, stopped when the bench ends; it, once ready."""
    env = {**env, "PORT": str(servers.free_port())}
    launched = Server(name, command, env, tmp, cwd, ready_path)
    started.append(launched)
    return launched


def stop(servers_to_stop):
    """Stop a phase's servers once it is done, so that the next phase has the machine."""
    for running in servers_to_stop:
        running.stop()
