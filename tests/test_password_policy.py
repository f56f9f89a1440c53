"""The password policy (NIST SP 800-63B-4 and API.md) at registration and at password change."""

from __future__ import annotations

import unicodedata

import pytest
from helpers import PASSWORD, bearer, login, register

from config import Config
from errors import ConfigError
from passwords import COMMON_PASSWORDS_FILE, common_passwords

FOX = "\N{FOX FACE}"  # one code point, four UTF-8 bytes
E_ACUTE_DECOMPOSED = "e\N{COMBINING ACUTE ACCENT}"  # two code points, one after NFC
Q_DOT_ABOVE = "q\N{COMBINING DOT ABOVE}"  # no precomposed form: two code points even after NFC


def long_common_passwords() -> list[str]:
    """Entries of the shipped list that are long enough to pass the length rule."""
    return sorted(p for p in common_passwords() if len(p) >= 15)[:3]


def assert_password_refused(response, field: str = "password") -> str:
    """422 problem+json naming the field; the message."""
    assert response.status_int == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["status"] == 422
    errors = response.json["errors"]
    assert [e["field"] for e in errors] == [field]
    return errors[0]["message"]


# -- the common-password list ------------------------------------------------------------
def test_the_shipped_list_holds_at_least_10000_passwords():
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    entries = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(entries) == 30_000
    assert len(common_passwords()) >= 10_000
    assert "password" in common_passwords()
    assert len(long_common_passwords()) == 3


@pytest.mark.parametrize("index", range(3))
def test_a_common_password_long_enough_is_still_refused(app, index):
    common = long_common_passwords()[index]
    message = assert_password_refused(register(app, "alice", common, status=422))
    assert "common" in message


def test_the_common_password_check_ignores_case(app):
    common = long_common_passwords()[0].upper()
    assert_password_refused(register(app, "alice", common, status=422))


# -- length, counted in code points after NFC ---------------------------------------------
def test_the_default_minimum_is_15_characters(app):
    message = assert_password_refused(register(app, "alice", "k" * 7 + "-" + "z" * 6, status=422))
    assert message == "must be at least 15 characters"
    assert register(app, "alice", "k" * 8 + "-" + "z" * 6).status_int == 201


def test_the_minimum_is_configurable(make_app, make_config):
    app = make_app(make_config(password_min_length=8))
    assert_password_refused(register(app, "alice", "kz-7x9q", status=422))
    assert register(app, "alice", "kz-7x9qw").status_int == 201


@pytest.mark.parametrize("value", ["7", "65", "0"])
def test_the_configured_minimum_stays_between_8_and_64(value):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"TOKENAUTH_PASSWORD_MIN_LENGTH": value})
    assert refused.value.variable == "TOKENAUTH_PASSWORD_MIN_LENGTH"


@pytest.mark.parametrize("value", ["8", "64"])
def test_the_configured_minimum_accepts_its_bounds(value):
    assert Config.from_env({"TOKENAUTH_PASSWORD_MIN_LENGTH": value}).password_min_length == int(
        value
    )


def test_256_characters_are_accepted_and_257_refused(app):
    assert register(app, "alice", "ab" * 128).status_int == 201
    message = assert_password_refused(register(app, "bob", "ab" * 128 + "c", status=422))
    assert "256" in message


def test_each_emoji_counts_as_one_character(app):
    assert_password_refused(register(app, "alice", FOX * 14, status=422))
    assert register(app, "alice", FOX * 15).status_int == 201
    assert register(app, "bob", FOX * 256).status_int == 201  # 1024 UTF-8 bytes
    assert_password_refused(register(app, "carol", FOX * 257, status=422))


def test_combining_sequences_are_counted_after_nfc(app):
    # Sixteen code points as sent, eight after NFC: too short.
    assert_password_refused(register(app, "alice", E_ACUTE_DECOMPOSED * 8, status=422))
    # Thirty code points as sent, fifteen after NFC: long enough.
    assert register(app, "alice", E_ACUTE_DECOMPOSED * 15).status_int == 201
    # A base and a mark without a precomposed form stay two code points.
    assert register(app, "bob", Q_DOT_ABOVE * 8).status_int == 201


def test_the_maximum_is_counted_after_nfc_too(app):
    # 400 code points as a Mac may send them, 200 after NFC: within 256.
    assert register(app, "alice", E_ACUTE_DECOMPOSED * 200).status_int == 201
    assert login(app, "alice", "\N{LATIN SMALL LETTER E WITH ACUTE}" * 200).status_int == 200


def test_the_same_characters_log_in_whatever_their_normal_form(app):
    decomposed = "cafe\N{COMBINING ACUTE ACCENT}-au-lait-sans-sucre"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    register(app, "alice", decomposed)
    assert login(app, "alice", composed).status_int == 200
    assert login(app, "alice", decomposed).status_int == 200


# -- not the username ----------------------------------------------------------------------
def test_the_username_is_refused_as_password_without_regard_to_case(app):
    message = assert_password_refused(
        register(app, "CorrectHorseBattery", "correcthorsebattery", status=422)
    )
    assert "username" in message
    assert_password_refused(register(app, "correcthorsebattery", "CORRECTHORSEBATTERY", status=422))


# -- any characters, no composition rules ---------------------------------------------------
@pytest.mark.parametrize(
    "password",
    [
        "tangerineocelotharbourlantern",  # all lower case, no digit, no symbol
        "correct horse battery staple",  # spaces
        "  leading and trailing spaces  ",
        "我的密码是一个很长的秘密短语句子",  # CJK
        "пароль-из-кириллицы-длинный",  # Cyrillic
        FOX + " runs through " + FOX + " the snow",  # emoji among words
        "tab\tand\nnewline inside it",  # control characters are characters too
    ],
)
def test_any_characters_are_allowed_without_composition_rules(app, password):
    assert register(app, "alice", password).status_int == 201
    assert login(app, "alice", password).status_int == 200


def test_form_encoded_registration_follows_the_same_policy(app):
    refused = app.post("/users", {"username": "alice", "password": "short"}, status=422)
    assert_password_refused(refused)
    common = long_common_passwords()[0]
    assert_password_refused(
        app.post("/users", {"username": "alice", "password": common}, status=422)
    )


# -- password change -------------------------------------------------------------------------
def change(app, token: str, current: str, new: str, **kwargs):
    body = {"current_password": current, "new_password": new}
    return app.put_json("/users/me/password", body, headers=bearer(token), **kwargs)


@pytest.mark.parametrize(
    "new",
    ["short-one", long_common_passwords()[0], FOX * 257],
)
def test_a_new_password_meets_the_same_policy(app, new):
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    assert_password_refused(change(app, token, PASSWORD, new, status=422), "new_password")
    assert login(app, "alice").status_int == 200  # the old password still works


def test_a_new_password_may_not_be_the_username(app):
    register(app, "alice-in-wonderland")
    token = login(app, "alice-in-wonderland").json["access_token"]
    refused = change(app, token, PASSWORD, "Alice-In-Wonderland", status=422)
    assert "username" in assert_password_refused(refused, "new_password")


def test_a_new_password_of_any_characters_is_accepted(app):
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    new = "新しい パスワード " + FOX * 3 + " long enough"
    assert change(app, token, PASSWORD, new).status_int == 204
    assert login(app, "alice", new).status_int == 200
