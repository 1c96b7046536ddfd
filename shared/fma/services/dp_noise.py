"""Where the DP noise of a round comes from, and how an authorized re-run gets it back.

Issue 19: seeding the noise with sha256("{experiment}:{round}") let anyone who read a model's
metadata regenerate the noise and subtract it. The seed is now derived from a deployment key
held by a `SecretStore` (a 0600 file in local mode, Secrets Manager on AWS):

    experiment key = HMAC-SHA256(key, "fma/dp-noise/v1/experiment/" + experiment_id)
    round seed     = HMAC-SHA256(experiment key, "round/" + n)   (256 bits -> numpy SeedSequence)

The manifest and the round's `privacy.noise` record the key id and that derivation label,
never a key; whoever can read the key (the aggregate function's role, an operator) re-runs
the round to the same bytes (services/rerun.py). Without a SecretStore the seed is drawn from
the OS CSPRNG and the record says the noise cannot be reproduced.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from fma.services.ports import SecretStore

SCHEME = "HMAC-SHA256(HMAC-SHA256(key, 'fma/dp-noise/v1/experiment/' + experiment_id), 'round/' + round)"


def _words(digest: bytes) -> list[int]:
    """256 bits as eight 32-bit words: numpy's SeedSequence keeps all of their entropy."""
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, len(digest), 4)]


def derive_seed(key: bytes, experiment_id: str, n: int) -> list[int]:
    exp_key = hmac.new(key, f"fma/dp-noise/v1/experiment/{experiment_id}".encode(), hashlib.sha256).digest()
    return _words(hmac.new(exp_key, f"round/{n}".encode(), hashlib.sha256).digest())


def noise_seed(store: SecretStore | None, experiment_id: str, n: int) -> tuple[list[int], dict[str, Any]]:
    """The round's noise seed and the record that goes to the manifest (no secret in it)."""
    if store is None:
        return _words(secrets.token_bytes(32)), {"source": "csprng", "reproducible": False}
    key_id, key = store.current()
    return derive_seed(key, experiment_id, n), {
        "source": "secret", "reproducible": True, "key_id": key_id, "derivation": SCHEME,
        "label": f"fma/dp-noise/v1/experiment/{experiment_id} round/{n}",
    }


def reproduce_seed(store: SecretStore, record: Mapping[str, Any], experiment_id: str, n: int) -> list[int]:
    """The seed a round used, from its manifest's record; KeyError when it cannot be had."""
    if record.get("source") != "secret":
        raise KeyError("this round's noise came from the CSPRNG: it cannot be reproduced")
    return derive_seed(store.key(str(record["key_id"])), experiment_id, n)
