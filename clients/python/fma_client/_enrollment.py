"""Enrollment: register with the enrollment token, or resume a saved registration.

Kept apart from `Client` so the model/update code reads on its own; `Client` mixes it in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fma_client._registration import Registration, RegistrationStore
from fma_client.errors import (
    Conflict,
    EnrollmentExhausted,
    FmaError,
    FmaHTTPError,
    Forbidden,
    Unauthorized,
)

if TYPE_CHECKING:
    from fma_client._http import Transport
    from fma_client._wait import Waiter

log = logging.getLogger("fma_client")


class Enrollment:
    """Registration, its persistence, and the resume path (see `fma_client._registration`)."""

    http: Transport
    waiter: Waiter
    experiment_id: str
    enrollment_token: str | None
    name: str | None
    client_id: str | None
    registration: RegistrationStore | None
    _claimed: bool
    _resumed: bool

    def close(self) -> None:
        """Release the registration slot (another client on this machine may then take it)."""
        if self.registration is not None:
            self.registration.release()
            self._claimed = False

    def __enter__(self) -> Enrollment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- enrollment and model ----------------------------------------------------------------

    def register(self) -> str:
        """Exchange the enrollment token for a client id and token; returns the client id.

        A REGISTRATION_CONFLICT (two registrations racing on the token's use count) is retried
        a few times, as the server asks; a used-up token raises EnrollmentExhausted (a
        Forbidden), another refused token Forbidden or Unauthorized with a hint. The new
        registration is saved (see the class doc), replacing what the slot held.
        """
        if not self.enrollment_token:
            raise FmaError("register() needs the enrollment_token given to Client(...)")
        self._claim()
        body = {"name": self.name} if self.name else {}
        for attempt in range(4):
            try:
                reply = self.http.call_json(
                    "POST", "experiments", self.experiment_id, "clients",
                    json=body, token=self.enrollment_token,
                )  # fmt: skip
                break
            except Conflict as exc:
                if exc.code != "REGISTRATION_CONFLICT" or attempt == 3:
                    raise
                self.waiter.sleep(self.http.retry.delay(attempt, self.http.rng))
            except (Unauthorized, Forbidden) as exc:
                raise _refused_enrollment(exc) from None
        self.client_id, self.http.token = reply["client_id"], reply["token"]
        self._resumed = False
        if self.registration is not None:
            self.registration.save(Registration(reply["client_id"], reply["token"]))
        return reply["client_id"]

    def _claim(self) -> Registration | None:
        """Lock this client's registration slot (once) and return what it holds."""
        if self.registration is None or self._claimed:
            return None
        saved = self.registration.claim()
        self._claimed = True
        return saved

    def _ensure_token(self) -> None:
        if self.http.token is not None:
            return
        if not self.enrollment_token:
            raise FmaError("Client needs a token or an enrollment_token")
        saved = self._claim()
        if saved is None:
            self.register()
            return
        self.client_id, self.http.token, self._resumed = saved.client_id, saved.token, True
        assert self.registration is not None
        log.info("resuming as client %s (registration saved in %s)", saved.client_id, self.registration.path)

    def _call_resumed(self, fn: Callable[[], Any]) -> Any:
        """Run `fn`; if a resumed token is unknown to the server (401), register again once."""
        try:
            return fn()
        except (Unauthorized, Forbidden) as exc:
            if not self._resumed or not self.enrollment_token or not _token_refused(exc):
                raise
            log.warning("the saved registration of client %s was refused (%s); registering again",
                        self.client_id, exc.code or exc.status)  # fmt: skip
            self.register()
            return fn()


def _token_refused(exc: FmaHTTPError) -> bool:
    """A saved token the server no longer knows (401: unknown, or expired), not a revocation: a
    client its developer revoked (403 `TOKEN_REVOKED`, `CLIENT_REVOKED`, or API Gateway's bare
    `FORBIDDEN` deny) must stay out, so it never re-registers itself with the enrollment token."""
    return isinstance(exc, Unauthorized) or exc.code == "TOKEN_EXPIRED"


def _refused_enrollment(exc: FmaHTTPError) -> FmaHTTPError:
    """The registration's refusal, with what to do about it."""
    if isinstance(exc, EnrollmentExhausted) or exc.hint:
        return exc
    return exc.with_hint(
        "the enrollment token was refused: it may have expired, been revoked, reached its max_uses, "
        "or belong to another experiment; ask the experiment's developer for a new one"
    )
