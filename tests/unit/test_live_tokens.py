"""Tokens that change while the server runs (added, replaced, revoked, a broken or vanished
tokens file), `anneal token revoke`, and the modes of every secret file anneal writes or has
Ray write. The real server's side is in tests/integration/test_live_tokens.py."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from anneal.errors import NotFound
from anneal.settings import DEV_TOKEN_FILE, Settings
from cluster.local.cli import main
from cluster.server.livetokens import LiveTokenTable
from cluster.server.principals import add_principal, configured_principals, dev_token, revoke_principal, tokens_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path)


def live(settings: Settings, clock: Clock) -> LiveTokenTable:
    return LiveTokenTable(settings, check_every_s=1.0, clock=clock)


def test_added_replaced_and_revoked_tokens_count_within_a_second(settings: Settings) -> None:
    path, clock = tokens_path(settings), Clock()
    alice = add_principal(path, "alice")
    table = live(settings, clock)
    bob = add_principal(path, "bob")
    assert table.authenticate(bob) is None  # not looked at again yet
    clock.now += 1.0
    assert table.authenticate(bob) is not None
    again = add_principal(path, "alice")  # a new token replaces the old
    revoke_principal(path, "bob")
    clock.now += 1.0
    assert table.authenticate(alice) is None and table.authenticate(bob) is None
    assert table.authenticate(again) is not None
    assert [p.name for p in table.principals] == ["alice"]


def test_a_broken_or_vanished_file_keeps_the_principals_last_read(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tokens_path(settings), Clock()
    alice = add_principal(path, "alice")
    table = live(settings, clock)
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        for broken in ('{"principals": [', '{"principals": [{"name": "Bad Name"}]}', "\xff"):
            path.write_text(broken, errors="surrogateescape")
            clock.now += 1.0
            assert table.authenticate(alice) is not None
            assert "kept the 1 principals last read" in caplog.text
            caplog.clear()
        path.unlink()
        clock.now += 1.0
        assert table.authenticate(alice) is not None
        assert "is gone; kept the 1 principals last read" in caplog.text
    bob = add_principal(path, "bob")  # a good file again: read at once
    clock.now += 1.0
    assert table.authenticate(bob) is not None and table.authenticate(alice) is None


def test_revoking_everyone_lets_no_one_in(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    path, clock = tokens_path(settings), Clock()
    alice = add_principal(path, "alice")
    table = live(settings, clock)
    revoke_principal(path, "alice")
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        assert table.authenticate(alice) is None
    assert "no principal is left" in caplog.text
    assert not (settings.home / DEV_TOKEN_FILE).exists()  # no development token either


def test_the_file_is_looked_at_once_a_second_at_most(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    add_principal(tokens_path(settings), "alice")
    clock = Clock()
    table = live(settings, clock)
    looked: list[Path] = []
    monkeypatch.setattr("cluster.server.livetokens.file_stamp", lambda path: looked.append(path))
    for _ in range(80):  # 10 s of calls
        table.authenticate("wrong")
        clock.now += 0.125
    assert len(looked) == 9  # at 1 s, 2 s, ... 9 s


def test_revoke_removes_the_principal_and_keeps_the_file_private(settings: Settings) -> None:
    path = tokens_path(settings)
    add_principal(path, "alice")
    add_principal(path, "bob", admin=True)
    path.chmod(0o644)
    revoke_principal(path, "alice")
    assert [p.name for p in configured_principals(settings)] == ["bob"]
    assert mode(path) == 0o600
    with pytest.raises(NotFound, match="no principal 'carol'"):
        revoke_principal(path, "carol")


def test_anneal_token_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "token", "add", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["--home", str(tmp_path), "token", "revoke", "alice"]) == 0
    assert configured_principals(Settings.load(home=tmp_path)) == []
    assert token not in (tmp_path / "tokens.json").read_text()
    assert main(["--home", str(tmp_path), "token", "revoke", "alice"]) != 0  # not there any more


def test_secret_files_others_could_read_are_made_private(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    token = dev_token(settings.home)
    assert mode(settings.home / DEV_TOKEN_FILE) == 0o600
    path = tokens_path(settings)
    add_principal(path, "alice")
    assert mode(path) == 0o600
    for loose in (settings.home / DEV_TOKEN_FILE, path):
        loose.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        assert dev_token(settings.home) == token
        configured_principals(settings)
    assert mode(settings.home / DEV_TOKEN_FILE) == 0o600 and mode(path) == 0o600
    assert caplog.text.count("it is now readable by its owner only") == 2


def test_rays_token_is_made_private(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`anneal up`'s Ray token, made by Ray's CLI in a HOME of the test's own."""
    from cluster.local.cluster import ensure_ray_token

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(HOME=str(tmp_path), RAY_AUTH_MODE="token")
    ensure_ray_token(env)
    token = tmp_path / ".ray" / "auth_token"
    assert mode(token) == 0o600 and mode(token.parent) == 0o700
    made = token.read_text()
    token.chmod(0o644)  # one made before, by an older anneal or by hand
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        ensure_ray_token(env)
    assert mode(token) == 0o600 and token.read_text() == made
    assert "Ray's token" in caplog.text
