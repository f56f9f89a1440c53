"""Second factors against real gunicorn: a code replayed at two instances at once is accepted
once, and an ordinary OAuth client library (requests-oauthlib) completes the two-step grant."""

from __future__ import annotations

import threading
import time

import pyotp
import pytest
import requests
from helpers import PASSWORD
from mfa_helpers import MFA_GRANT
from oauthlib.oauth2 import Client, LegacyApplicationClient
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request
from requests_oauthlib import OAuth2Session

CLIENT_ID = "tokenauth-test"


def enabled_totp(base: str) -> pyotp.TOTP:
    """alice registered with TOTP confirmed by the previous step's code (accepted within the
    window), so the current step's code is still unused; her TOTP."""
    requests.post(
        f"{base}/users", json={"username": "alice", "password": PASSWORD}, timeout=10
    ).raise_for_status()
    token = requests.post(
        f"{base}/auth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        timeout=10,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    enrolment = requests.post(f"{base}/users/me/mfa/totp", headers=headers, timeout=10)
    assert enrolment.status_code == 201
    totp = pyotp.TOTP(enrolment.json()["secret"])
    confirm = requests.post(
        f"{base}/users/me/mfa/totp/confirm",
        json={"code": totp.at(time.time() - 30)},
        headers=headers,
        timeout=10,
    )
    assert confirm.status_code == 200, confirm.text
    return totp


def mfa_token(base: str) -> str:
    answer = requests.post(
        f"{base}/auth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        timeout=10,
    )
    assert answer.status_code == 403, answer.text
    return answer.json()["mfa_token"]


def at_once(bases: list[str], tokens: list[str], code: str) -> list[requests.Response]:
    """The MFA grant with one code, each instance its own mfa_token, released together."""
    barrier = threading.Barrier(len(bases))
    answers: list[requests.Response | None] = [None] * len(bases)

    def complete(index: int) -> None:
        body = {"grant_type": MFA_GRANT, "mfa_token": tokens[index], "otp": code}
        barrier.wait()
        answers[index] = requests.post(f"{bases[index]}/auth/token", data=body, timeout=10)

    threads = [threading.Thread(target=complete, args=(i,)) for i in range(len(bases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def test_one_code_sent_to_two_instances_at_once_is_accepted_once(gunicorn_server):
    bases = [gunicorn_server(), gunicorn_server()]  # one database, one keys directory
    totp = enabled_totp(bases[0])
    now = time.time()
    # Two rounds, each with a code not used before: this step's, then the next one's.
    for code in (totp.at(now), totp.at(now + 30)):
        answers = at_once(bases, [mfa_token(base) for base in bases], code)
        assert sorted(a.status_code for a in answers) == [200, 400], [a.text for a in answers]
        (refused,) = [a for a in answers if a.status_code == 400]
        assert refused.json() == {
            "error": "invalid_grant",
            "error_description": "The otp is incorrect",
        }


class MfaClient(Client):
    """An oauthlib client for the extension grant: `mfa_token` plus `otp` (RFC 6749 §4.5)."""

    grant_type = MFA_GRANT

    def prepare_request_body(self, mfa_token=None, otp=None, body="", **kwargs):
        """grant_type, mfa_token and otp, form-encoded."""
        kwargs["client_id"] = self.client_id
        kwargs["include_client_id"] = kwargs.get("include_client_id", False)
        return prepare_token_request(
            self.grant_type, body=body, mfa_token=mfa_token, otp=otp, **kwargs
        )


def test_an_oauth_client_library_completes_the_two_step_grant(gunicorn_server, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    base = gunicorn_server()
    totp = enabled_totp(base)
    first: list[dict] = []

    def keep_answer(response: requests.Response) -> requests.Response:
        first.append(response.json())
        return response

    password = OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID))
    password.register_compliance_hook("access_token_response", keep_answer)
    with pytest.raises(CustomOAuth2Error) as refused:
        password.fetch_token(f"{base}/auth/token", username="alice", password=PASSWORD)
    assert refused.value.error == "mfa_required"
    assert first[0]["mfa_methods"] == ["otp", "recovery_code"]

    session = OAuth2Session(client=MfaClient(client_id=CLIENT_ID))
    token = session.fetch_token(
        f"{base}/auth/token", mfa_token=first[0]["mfa_token"], otp=totp.now()
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 900
    me = session.get(f"{base}/users/me", timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    verify = session.get(f"{base}/auth/verify?acr=aal2", timeout=10)
    assert verify.status_code == 204
    assert verify.headers["X-Auth-Amr"] == "pwd,otp,mfa"
    # The library refreshes as usual; the session keeps its second factor.
    session.refresh_token(f"{base}/auth/token", client_id=CLIENT_ID)
    assert session.get(f"{base}/auth/verify?acr=aal2", timeout=10).status_code == 204
