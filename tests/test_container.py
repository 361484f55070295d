"""The container image: the Dockerfile linted by hadolint, compose.yaml held to the Procfile
and the settings, and the image itself built and run against PostgreSQL as a deploy runs it,
the release in one container and then the web process in another.

The registry that holds ``python:3.11-slim`` cannot be reached from here, so the image is built
on a base made from Debian's own packages, as the Dockerfile's ``BASE`` argument allows:
debootstrap lays a minimal Debian 12 (its python3 is 3.11, the Python of .python-version) with
python3-venv, ``podman import`` turns it into a local image, and the build gets that image's
name as ``--build-arg BASE=...``. The base is tagged with a hash of everything that goes into
it (the recipe below, and this machine's own certificate authorities) and kept in podman's
store, as are the build's layers, so only the first run on a machine pays for debootstrap and
pip. Measured on the 2-core machine CI runs on: the first run of this module about 85 s
(debootstrap 50 s, the import 7 s, the pip layer 15 s), one after requirements.txt changed
about 17 s, and every other run about 5 s, most of it the three containers.

The container tests run podman as root. They skip, saying why, only where no container can
run: not root (debootstrap, and podman's root store), podman, runc, slirp4netns or debootstrap
missing (.ci/run installs them), or no network namespaces.
"""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from api.config import Config

from . import servers

ROOT = servers.ROOT
HADOLINT = ROOT / "tools" / "hadolint" / "bin" / "hadolint"

# Debian 12, whose python3 is 3.11; python3-venv brings ensurepip, which the Dockerfile's venv
# needs; ca-certificates is the trust store pip reads.
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_REPOSITORY = "localhost/rest-api-test-base"
# Certificate authorities this machine's administrator added (a TLS-inspecting proxy's, say):
# the base trusts what the machine's own pip trusts, or pip in the build could not reach PyPI.
LOCAL_AUTHORITIES = Path("/usr/local/share/ca-certificates")
# Bumped by hand whenever build_base changes what it does with the recipe.
RECIPE_VERSION = 1

# Debian's podman runs crun, which refuses a machine whose cgroup v2 hierarchy holds a
# controller beside v1 ones ("hybrid mode", as on this kind of VM); runc runs on every layout.
PODMAN = ("podman", "--runtime", "runc")
# Podman asks for more open files and processes than a root without CAP_SYS_RESOURCE may have,
# and the container then fails to start. These fit under this machine's own hard limit and
# above the 2304 files the web process raises its limit to (WEB_MAX_CONNECTIONS + 256).
_, _hard_files = resource.getrlimit(resource.RLIMIT_NOFILE)
OPEN_FILES = 8192 if _hard_files == resource.RLIM_INFINITY else min(8192, _hard_files)
ULIMITS = ("--ulimit", f"nofile={OPEN_FILES}:{OPEN_FILES}", "--ulimit", "nproc=4096:4096")
# Root's tools (debootstrap, chroot, runc) live in sbin, which a PATH may leave out.
TOOLS_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
# Containers reach the host's loopback, where the test PostgreSQL listens, at 10.0.2.2.
NETWORK = ("--network", "slirp4netns:allow_host_loopback=true")
HOST_LOOPBACK = "10.0.2.2"
# The port the web container is told to listen on: not the default, so that PORT is honoured.
CONTAINER_PORT = 5000


def dockerfile_command():
    """The Dockerfile's CMD, in its exec form."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return json.loads(next(line for line in lines if line.startswith("CMD "))[4:])


def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_image_runs_the_procfile():
    assert dockerfile_command() == servers.procfile_command("web")
    assert compose()["services"]["release"]["command"] == servers.procfile_command("release")


def test_compose_migrates_once_then_serves_on_postgresql_and_redis():
    services = compose()["services"]
    release, web = services["release"], services["web"]
    # One image, from this Dockerfile, for both.
    assert release["build"] == web["build"] == "."
    assert release["image"] == web["image"]
    assert release["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert web["depends_on"]["release"] == {"condition": "service_completed_successfully"}
    assert "restart" not in release, "a release that restarts would migrate again"
    assert "test" in services["postgres"]["healthcheck"]
    environment = web["environment"]
    assert sa.engine.make_url(environment["DATABASE_URL"]).host == "postgres"
    assert environment["RATELIMIT_STORAGE_URI"].startswith("redis://redis:")
    # Every variable set is a setting of the README's configuration table.
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in environment:
        assert f"| `{name}` |" in table, name
    published = web["ports"][0].rsplit(":", 1)
    assert published == ["127.0.0.1:${PORT:-8000}", str(Config().PORT)]


def run_hadolint(dockerfile, tmp_path):
    """hadolint on one file with no configuration but its own: a developer's config file or
    HADOLINT_* variables cannot hide a finding, nor can a pragma in the file."""
    if not HADOLINT.exists():
        pytest.skip("hadolint is not installed: `make test` installs it into tools/hadolint/")
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    return subprocess.run(
        [HADOLINT, "--config", config, "--no-color", "--failure-threshold", "style"]
        + ["--disable-ignore-pragma", dockerfile],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path):
    result = run_hadolint(ROOT / "Dockerfile", tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("--no-cache-dir ", "", "DL3042"),
        ("--requirement requirements.txt", "flask", "DL3013"),
        ("USER 10001:10001", "USER root", "DL3002"),
        # A pragma in the file is not a way out.
        (
            "RUN python3 -m venv",
            "# hadolint ignore=DL3003\nRUN cd /opt && python3 -m venv",
            "DL3003",
        ),
    ],
)
def test_hadolint_sees_a_broken_dockerfile(tmp_path, old, new, rule):
    original = (ROOT / "Dockerfile").read_text()
    assert old in original
    broken = tmp_path / "Dockerfile"
    broken.write_text(original.replace(old, new, 1))
    result = run_hadolint(broken, tmp_path)
    assert result.returncode == 1
    assert rule in result.stdout


def run(command, timeout=600, **kwargs):
    """Run a command to completion; on failure, the error shows what it printed."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": TOOLS_PATH},
        **kwargs,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def container_engine_or_skip():
    """Skip, saying why, where no container can run; under .ci/run a skip is a failure."""
    if os.geteuid() != 0:
        pytest.skip("the container tests need root: debootstrap, and podman's root store")
    missing = [
        tool
        for tool in ("podman", "runc", "slirp4netns", "debootstrap")
        if not shutil.which(tool, path=TOOLS_PATH)
    ]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: "
            "apt-get install podman runc slirp4netns debootstrap (.ci/run does)"
        )
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine cannot make network namespaces, which every container needs")


def base_recipe():
    """Everything the base is made of, as one text: its hash names the base's tag."""
    authorities = sorted(LOCAL_AUTHORITIES.rglob("*.crt")) if LOCAL_AUTHORITIES.is_dir() else []
    parts = [f"recipe {RECIPE_VERSION}", DEBIAN_SUITE, DEBIAN_MIRROR, *BASE_PACKAGES]
    parts += [
        f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}" for path in authorities
    ]
    return "\n".join(parts), authorities


def build_base(tag, authorities):
    """A minimal Debian with python3, made into a local image from a folder debootstrap lays."""
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="rest-api-base-") as folder:
        rootfs = Path(folder) / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
            + [DEBIAN_SUITE, rootfs, DEBIAN_MIRROR]
        )
        if authorities:
            for path in authorities:
                shutil.copy(path, rootfs / "usr/local/share/ca-certificates" / path.name)
            run(["chroot", rootfs, "update-ca-certificates"])
        # What an image never reads: apt's package lists and caches, documentation.
        for leftover in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / leftover, ignore_errors=True)
        with subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE) as tar:
            run([*PODMAN, "import", "-", tag], stdin=tar.stdout)
        assert tar.returncode == 0


@pytest.fixture(scope="module")
def base_image():
    """The base, built once per machine and recipe."""
    container_engine_or_skip()
    recipe, authorities = base_recipe()
    tag = f"{BASE_REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    exists = subprocess.run([*PODMAN, "image", "exists", tag], capture_output=True)
    if exists.returncode != 0:
        build_base(tag, authorities)
    return tag


@pytest.fixture(scope="module")
def image(base_image, tmp_path_factory):
    """The image, built from this checkout by the Dockerfile and run by its id, not a tag, so
    that a build from another checkout on this machine cannot swap it under a test."""
    id_file = tmp_path_factory.mktemp("image") / "id"
    # Docker's format, not the OCI one podman defaults to, which has no HEALTHCHECK.
    run(
        [*PODMAN, "build", "--format", "docker", *ULIMITS, "--build-arg", f"BASE={base_image}"]
        + ["--iidfile", id_file, ROOT]
    )
    return id_file.read_text().strip()


def in_container(url):
    """A database URL on this machine's loopback, as a container reaches it."""
    url = sa.engine.make_url(url)
    if url.host in ("127.0.0.1", "localhost"):
        url = url.set(host=HOST_LOOPBACK)
    return url.render_as_string(hide_password=False)


# What the image's user sees of /app: its own id, the entries, any bytecode that came along,
# and which folders it may write to.
LOOK_AROUND = """
import os
print(os.getuid())
print(sorted(os.listdir("/app")))
print(sorted(root for root, _, _ in os.walk("/app") if root.endswith("__pycache__")))
print(sorted(name for name in os.listdir("/app") if os.access(f"/app/{name}", os.W_OK)))
"""


@pytest.mark.server
def test_the_image_holds_the_app_and_runs_it_as_another_user(image):
    output = run([*PODMAN, "run", "--rm", *ULIMITS, image, "python", "-c", LOOK_AROUND])
    uid, entries, bytecode, writable = output.splitlines()
    assert uid == "10001"
    # .dockerignore lets in what the Dockerfile copies, and nothing else.
    assert entries == str(
        ["api", "instance", "migrations", "requirements.txt", "static", "templates"]
    )
    assert bytecode == "[]"
    # The code is read-only to the service; only the default SQLite file's folder is not.
    assert writable == str(["instance"])


@pytest.mark.server
def test_the_image_releases_then_serves_and_counts_on_postgresql(
    image, pg_empty_url, read_counter, tmp_path
):
    database = ["--env", f"DATABASE_URL={in_container(pg_empty_url)}"]
    # The release step, as the README shows it: migrations on an empty database.
    release = [*PODMAN, "run", "--rm", *ULIMITS, *NETWORK, *database, image]
    run([*release, "flask", "--app", "api", "db", "upgrade"], timeout=120)
    assert read_counter(pg_empty_url) == 0

    name = f"rest-api-test-{uuid.uuid4().hex[:12]}"
    port = servers.free_port()
    web = [*PODMAN, "run", "--rm", "--name", name, *ULIMITS, *NETWORK, *database]
    # Published from the container's own interface, so it answers only if it listens on
    # 0.0.0.0, and on the PORT it was given.
    web += ["--env", f"PORT={CONTAINER_PORT}", "--publish", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
    try:
        # The image's own command: no command given. Ready once /healthz answers 200.
        server = servers.Server(
            {**os.environ, "PORT": str(port)}, tmp_path / "web.log", [*web, image]
        )
        try:
            first = servers.fetch(server.url + "/api?data=hits")
            second = servers.fetch(server.url + "/api?data=hits")
            assert (first.status, second.status) == (200, 200)
            counts = [json.loads(a.body)["content"] for a in (first, second)]
            assert counts == [1, 2], server.output()
            assert read_counter(pg_empty_url) == 2
            # The image's HEALTHCHECK, run by the engine inside the container, on PORT.
            run([*PODMAN, "healthcheck", "run", name], timeout=30)
        finally:
            server.stop()
        # SIGTERM reached granian as the container's first process: a graceful stop, status 0.
        assert server.process.returncode == 0, server.output()
    finally:
        subprocess.run([*PODMAN, "rm", "--force", "--ignore", name], capture_output=True)
