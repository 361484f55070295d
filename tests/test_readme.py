"""The README's configuration table names every setting the code reads from the environment."""

import re

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
