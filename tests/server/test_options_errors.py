"""Small rules, checked directly: bind safety, Host allow-list, error scrubbing, token budget."""

from __future__ import annotations

import os

import pytest

from mlxk.errors import UsageError
from mlxk.server.errors import ApiError, scrub
from mlxk.server.generation import token_budget
from mlxk.server.options import ServerOptions, check_bind, is_loopback, validate


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_binds_need_no_key(host: str) -> None:
    assert is_loopback(host)
    assert check_bind(ServerOptions(host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_public_binds_need_a_key_or_insecure(host: str) -> None:
    with pytest.raises(UsageError, match="--api-key"):
        check_bind(ServerOptions(host=host))
    assert "WARNING" in (check_bind(ServerOptions(host=host, insecure=True)) or "")
    assert check_bind(ServerOptions(host=host, api_key="long-enough-key")) is None


def test_short_keys_and_bad_numbers_are_usage_errors() -> None:
    for bad in (
        ServerOptions(api_key="short"),
        ServerOptions(port=0),
        ServerOptions(max_queue=0),
        ServerOptions(max_tokens=0),
    ):
        with pytest.raises(UsageError):
            validate(bad)


def test_host_allowlist() -> None:
    loop = ServerOptions().host_allowlist()
    assert loop is not None and {"localhost", "127.0.0.1", "[::1]"} <= set(loop)
    assert "evil.example" not in loop
    assert ServerOptions(host="0.0.0.0").host_allowlist() is None
    named = ServerOptions(host="0.0.0.0", allowed_hosts=("api.lan",)).host_allowlist()
    assert named is not None and "api.lan" in named
    assert "10.0.0.2" in (ServerOptions(host="10.0.0.2").host_allowlist() or ())


def test_scrub_removes_paths_home_and_object_reprs() -> None:
    home = os.path.expanduser("~")
    message = (
        f"cannot load text model at {home}/models/smollm2: <mlx.core.array object at "
        "0x7f00deadbeef> failed; see C:\\Users\\bob\\x.bin and /tmp/pytest-of-root/x/y"
    )
    out = scrub(message)
    assert home not in out and "/tmp/" not in out and "0x7f" not in out
    assert "C:\\Users" not in out and "bob" not in out
    assert "…/smollm2" in out and "<object>" in out


def test_scrub_keeps_ordinary_messages() -> None:
    text = "Model 'org/name' does not support audio input. Models that can: whisper-base"
    assert scrub(text) == text


def test_token_budget() -> None:
    assert token_budget(10, 100, None, 4096) == 90
    assert token_budget(10, 100, 5, 4096) == 5
    assert token_budget(10, 10_000, None, 64) == 64
    with pytest.raises(ApiError, match="context length of 100"):
        token_budget(10, 100, 91, 4096)
    with pytest.raises(ApiError, match="100 tokens"):
        token_budget(100, 100, None, 4096)
