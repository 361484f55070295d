"""The token commands, through the runner as an operator would use them."""

import re
import sqlite3
import subprocess
from contextlib import closing

import pytest

from api import cli, storage, token_hashing

from . import servers


def test_create_prints_the_token_alone_on_the_last_line(runner):
    result = runner.invoke(args=["token", "create", "alice"])
    assert result.exit_code == 0
    secret = result.stdout.splitlines()[-1]
    assert secret.startswith("rapi_")
    # 32 random bytes in URL-safe base64 is 43 characters: 256 bits.
    assert len(secret) == len("rapi_") + 43
    assert result.stdout.strip() == secret


def test_each_token_is_different(runner):
    a = runner.invoke(args=["token", "create", "a"]).stdout.strip()
    b = runner.invoke(args=["token", "create", "b"]).stdout.strip()
    assert a != b


def test_duplicate_name_is_a_clear_error(runner, token):
    result = runner.invoke(args=["token", "create", "test-client"])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "pick another name" in result.output


def test_a_revoked_name_stays_taken(runner, token):
    runner.invoke(args=["token", "revoke", "test-client"])
    result = runner.invoke(args=["token", "create", "test-client"])
    assert result.exit_code == 1
    assert "names stay taken after a revoke" in result.output


def test_list_shows_names_and_state_never_secrets(runner, token):
    runner.invoke(args=["token", "create", "second"])
    runner.invoke(args=["token", "revoke", "second"])
    result = runner.invoke(args=["token", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "CREATED",
        "EXPIRES",
        "LAST",
        "USED",
        "24H",
        "30D",
        "SCOPES",
        "RATE",
        "STATE",
    ]
    assert lines[1].startswith("test-client") and lines[1].endswith("active")
    assert lines[2].startswith("second") and "revoked" in lines[2]
    assert token not in result.output
    assert token_hashing.hash_token(token) not in result.output


def test_list_when_empty(runner):
    result = runner.invoke(args=["token", "list"])
    assert result.exit_code == 0
    assert "No tokens yet" in result.stdout


def test_list_shows_last_use(runner, client, token):
    def dates():
        """The timestamps on the token's row: created, then last used once it has been."""
        row = runner.invoke(args=["token", "list"]).stdout.splitlines()[1]
        return re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", row)

    assert len(dates()) == 1
    assert client.get("/api/errors", query_string={"token": token}).status_code == 200
    assert len(dates()) == 2


def test_revoke_unknown_name(runner):
    result = runner.invoke(args=["token", "revoke", "nobody"])
    assert result.exit_code == 1
    assert "no token is called 'nobody'" in result.output


def test_revoke_twice(runner, token):
    assert "Revoked" in runner.invoke(args=["token", "revoke", "test-client"]).stdout
    second = runner.invoke(args=["token", "revoke", "test-client"])
    assert second.exit_code == 0
    assert "already revoked" in second.stdout


def test_database_holds_only_the_hash(token, database_path):
    dump = "\n".join(sqlite3.connect(database_path).iterdump())
    assert token not in dump
    assert token[len("rapi_") :] not in dump
    assert token_hashing.hash_token(token) in dump


# Names: a new one follows the rule; any one, old rows' included, prints as one safe line.

BAD_NAMES = {
    "empty": "",
    "leading space": " alice",
    "trailing space": "alice ",
    "inner space": "al ice",
    "65 characters": "a" * 65,
    "5,000 characters": "a" * 5000,
    "terminal escape": "\x1b[2Jalice",
    "newline forging a row": "alice\nmallory 2026-01-01 00:00:00 UTC - active",
    "carriage return": "alice\rmallory",
    "non-ascii letter": "al\u00efce",
    "lookalike": "\u0430lice",
    "slash": "a/b",
    "quote": "a'b",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_name_outside_the_rule_is_refused_with_one_line(runner, name):
    result = runner.invoke(args=["token", "create", "--", name])
    assert result.exit_code == 1
    assert result.stdout == ""  # no token was issued
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: '") and line.endswith(f"a name is {cli.NAME_RULE}")
    assert len(line) < 200
    assert "\x1b" not in line and "\r" not in line
    assert runner.invoke(args=["token", "list"]).stdout.startswith("No tokens yet")


@pytest.mark.parametrize("name", ["a", "a" * 64, "A.b_c-9", "-leading-dash", "..."])
def test_names_inside_the_rule_are_taken(runner, name):
    result = runner.invoke(args=["token", "create", "--", name])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("rapi_")


def store_a_row_named(database_path, name):
    """A token row from before the naming rule, written as an old release could have."""
    with closing(sqlite3.connect(database_path)) as db, db:
        db.execute(
            "INSERT INTO tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
            (name, token_hashing.hash_token(name), "2026-01-01 00:00:00"),
        )


def test_old_rows_with_any_name_print_as_one_escaped_line_each(runner, database_path):
    for name in BAD_NAMES.values():
        store_a_row_named(database_path, name)
    result = runner.invoke(args=["token", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(BAD_NAMES)
    assert all(line.endswith(" active") for line in lines[1:])
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "\\x1b[2Jalice" in result.stdout
    assert "alice\\nmallory" in result.stdout


def test_an_old_row_with_any_name_can_still_be_revoked(runner, database_path):
    name = BAD_NAMES["terminal escape"]
    store_a_row_named(database_path, name)
    result = runner.invoke(args=["token", "revoke", "--", name])
    assert result.exit_code == 0
    assert result.stdout == "Revoked token '\\x1b[2Jalice'.\n"
    unknown = runner.invoke(args=["token", "revoke", "--", "x\ny" + "z" * 500])
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: no token is called 'x\\ny" + "z" * 61 + "...'; " + (
        "see: flask --app api token list\n"
    )


# Failures: whatever goes wrong, one line on stderr and status 1; never a token or its hash.

HASH = re.compile(r"[0-9a-f]{64}")


def run_token_command(database_url, *args, **env):
    """``flask --app api token ...`` as an operator runs it, in a process of its own, so that
    what reaches the terminal is exactly what the flask command prints."""
    return subprocess.run(
        ["flask", "--app", "api", "token", *args],
        cwd=servers.ROOT,
        env=servers.clean_env(DATABASE_URL=database_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_failure(result, reason):
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # no token was issued
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: the database failed: ") and line.endswith(reason), line
    assert not HASH.search(result.stderr) and "rapi_" not in result.stderr


@pytest.fixture
def read_only_url(token, database_path):
    """The test's SQLite file, holding one token, made read-only. chmod alone does not bind
    root, as whom CI runs here, so SQLite is also told to open it read-only (mode=ro), which
    is how it opens a file it may not write."""
    database_path.chmod(0o444)
    yield f"sqlite:///file:{database_path}?mode=ro&uri=true"
    database_path.chmod(0o644)


@pytest.mark.parametrize(
    "args", [("create", "new-client"), ("revoke", "test-client")], ids=["create", "revoke"]
)
def test_a_read_only_database_is_one_line(read_only_url, args):
    assert_one_line_failure(
        run_token_command(read_only_url, *args), "attempt to write a readonly database"
    )


@pytest.mark.parametrize(
    "args",
    [("create", "new-client"), ("list",), ("revoke", "test-client")],
    ids=["create", "list", "revoke"],
)
def test_an_unreachable_database_is_one_line(args):
    url = f"postgresql://postgres@127.0.0.1:{servers.free_port()}/test"
    assert_one_line_failure(run_token_command(url, *args), "Connection refused")


def test_a_locked_database_is_one_line(database_path):
    with closing(sqlite3.connect(database_path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        result = run_token_command(
            f"sqlite:///{database_path}", "create", "new-client", SQLITE_BUSY_TIMEOUT_MS=100
        )
    assert_one_line_failure(result, "database is locked")


def test_an_unexpected_error_is_one_line_that_names_only_its_kind(runner, monkeypatch):
    def failing(name, token_hash, *_terms):
        raise RuntimeError(f"could not store {name} with {token_hash}")

    # Nothing real fails this way on demand; the stand-in fails as SQL errors do, quoting
    # the hash.
    monkeypatch.setattr(storage, "create_token", failing)
    result = runner.invoke(args=["token", "create", "new-client"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: unexpected RuntimeError\n"


def test_a_database_url_that_is_not_one_refuses_with_one_line_and_no_password():
    result = run_token_command("postgres//user:hunter2@db.example/api", "list")
    assert result.returncode == 3
    (line,) = (result.stdout + result.stderr).splitlines()
    assert line.startswith("Refusing to start: DATABASE_URL is not a database URL")
    assert "hunter2" not in line
