"""firedetd/login.py: the status page's password hash, sessions, CSRF tokens and the hash-password command."""

import io
import sys

import pytest

from firedetd import cli, login
from firedetd.config import build_config
from firedetd.errors import ConfigError


def test_a_password_hash_verifies_its_own_password_and_no_other():
    encoded = login.hash_password("correct horse", iterations=1000)
    again = login.hash_password("correct horse", iterations=1000)
    assert encoded.startswith("pbkdf2_sha256$1000$") and encoded != again   # a fresh salt each time
    assert login.verify_password("correct horse", encoded) and login.verify_password("correct horse", again)
    assert not login.verify_password("correct hors", encoded) and not login.verify_password("", encoded)


@pytest.mark.parametrize("bad", ["secret", "pbkdf2_sha256$100$c2FsdHNhbHQ$" + "A" * 43,
                                 "md5$200000$c2FsdHNhbHQ$abc", "pbkdf2_sha256$many$c2FsdHNhbHQ$abc",
                                 "pbkdf2_sha256$200000$c2FsdHNhbHQ$c2hvcnQ"])
def test_a_password_hash_that_is_not_pbkdf2_sha256_is_refused_naming_the_key_not_the_value(bad):
    with pytest.raises(ConfigError, match=r"^http\.password_hash: ") as error:
        build_config({"http": {"password_hash": bad}})
    assert bad not in str(error.value)


def test_sessions_expire_end_at_logout_and_are_found_only_by_their_token():
    sessions = login.Sessions(lifetime_s=60)
    token, csrf = sessions.create(now_ns=10 ** 9)
    other, _ = sessions.create(now_ns=10 ** 9)
    assert sessions.get(token, now_ns=30 * 10 ** 9).csrf == csrf
    assert sessions.get(token + "x", now_ns=10 ** 9) is None and sessions.get(None) is None
    assert sessions.get(token, now_ns=62 * 10 ** 9) is None   # expired
    sessions.end(other)
    assert sessions.get(other, now_ns=2 * 10 ** 9) is None


def test_the_oldest_session_goes_when_too_many_logins_pile_up():
    sessions = login.Sessions(lifetime_s=60, max_sessions=3)
    tokens = [sessions.create(now_ns=10 ** 9)[0] for _ in range(4)]
    assert sessions.get(tokens[0], now_ns=10 ** 9) is None and sessions.get(tokens[3], now_ns=10 ** 9) is not None


def test_the_csrf_token_must_be_the_sessions_own():
    sessions = login.Sessions(lifetime_s=60)
    token, csrf = sessions.create()
    _, other_csrf = sessions.create()
    session = sessions.get(token)
    assert login.csrf_matches(session, csrf)
    assert not login.csrf_matches(session, other_csrf) and not login.csrf_matches(session, "")
    assert not login.csrf_matches(None, csrf)


def test_logins_stop_for_a_minute_after_ten_wrong_passwords():
    sessions = login.Sessions(lifetime_s=60)
    for n in range(login.FAILED_LOGINS_PER_MINUTE):
        assert sessions.login_allowed(now_ns=n * 10 ** 9)
        sessions.login_failed(now_ns=n * 10 ** 9)
    assert not sessions.login_allowed(now_ns=20 * 10 ** 9)
    assert sessions.login_allowed(now_ns=61 * 10 ** 9)   # the first failure is a minute old


def test_the_session_token_is_read_from_its_own_cookie_only():
    assert login.cookie_token("a=1; firedetd_session=abc; b=2") == "abc"
    assert login.cookie_token("xfiredetd_session=abc") is None and login.cookie_token(None) is None


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("", False), ("::", False),
                                           ("192.168.1.20", False)])
def test_only_loopback_hosts_count_as_loopback(host, loopback):
    assert login.is_loopback(host) is loopback


def test_hash_password_command_prints_a_hash_the_config_accepts(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))
    assert cli.main(["hash-password", "--stdin", "--iterations", "1000"]) == 0
    encoded = capsys.readouterr().out.strip()
    config = build_config({"http": {"password_hash": encoded}})
    assert login.verify_password("a long passphrase", config.http.password_hash)


def test_hash_password_command_refuses_a_short_password(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password", "--stdin"]) != 0
    assert "at least 8 characters" in capsys.readouterr().err
