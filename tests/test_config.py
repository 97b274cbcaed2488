"""PLAT-2: the example documents every field; bad files stop startup naming the key."""

import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from appliance import config
from appliance.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _fields():
    for section in config.Config.__struct_fields__:
        cls = typing.get_type_hints(config.Config)[section]
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in cls.__struct_fields__:
            yield section, name, hints[name]


def test_every_field_has_a_description():
    missing = [f"{s}.{n}" for s, n, hint in _fields()
               if not getattr(hint, "__metadata__", None) or not hint.__metadata__[0].description]
    assert not missing, f"config fields without a description: {missing}"


def test_every_field_is_in_the_example_with_a_comment():
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    problems = []
    for section, name, _ in _fields():
        if name not in data.get(section, {}):
            problems.append(f"{section}.{name} missing from config.example.toml")
            continue
        block = text.split(f"[{section}]", 1)[1]
        match = re.search(rf"^# .+\n{re.escape(name)} = ", block, re.M)
        if not match:
            problems.append(f"{section}.{name} has no comment line above it")
    assert not problems, problems


def test_example_equals_defaults():
    assert config.load(EXAMPLE) == config.Config()


@pytest.mark.parametrize("text, path", [
    ("[web]\nlisten_prot = 1\n", "web"),
    ("[web]\nlisten_port = 70000\n", "web.listen_port"),
    ("[web]\nlisten_port = \"8443\"\n", "web.listen_port"),
    ("[auth]\nsession_idle_minutes = 61\n", "auth.session_idle_minutes"),
    ("[tls]\nprofile = \"old\"\n", "tls.profile"),
    ("[tls]\nleaf_days = 30\nrenew_before_days = 30\n", "tls"),
    ("[nonsense]\n", "nonsense"),
    ("[web]\ntrusted_proxies = [\"not-an-ip\"]\n", "web"),
])
def test_bad_values_name_the_key(tmp_path, text, path):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(f)
    assert path in err.value.message


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[web\nlisten_port=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(binary)


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(EXAMPLE)], capture_output=True,
                        text=True, cwd=ROOT)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok"
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\nkey_sorce = \"file\"\n")
    r = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(bad)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 1
    assert "store" in r.stderr and "key_sorce" in r.stderr and r.stdout == ""
