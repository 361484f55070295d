"""The token commands, through the runner as an operator would use them."""

import re
import sqlite3

from api import token_hashing


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
    assert lines[0].split() == ["NAME", "CREATED", "LAST", "USED", "STATE"]
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
        return re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row)

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
