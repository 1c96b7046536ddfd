"""TOKEN authorizer: sha256 of the bearer token -> role and scope in the request context.

The policy allows the whole API (it is cached per token); handlers enforce role and scope.
Unknown or expired tokens -> 401 ("Unauthorized"); a revoked token -> Deny (403), with its
reason code in the context. Nothing is cached here: local mode calls this on every request, so
a revocation takes effect at once; on AWS, API Gateway caches each answer for
`authorizer_cache_seconds`, which bounds how long a revoked token still reads (writes by a
client re-check its token in the API).
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger

from authorizer.settings import load_settings
from fma.adapters.factory import build_token_deps
from fma.domain.auth import parse_bearer
from fma.domain.errors import Forbidden, Unauthorized
from fma.services.access import authenticate
from fma.services.deps import TokenDeps

logger = Logger()


@functools.cache
def deps() -> TokenDeps:
    return build_token_deps(load_settings())


def api_wildcard(method_arn: str) -> str:
    """arn:aws:execute-api:region:acct:api/stage/VERB/path -> arn:...:api/stage/*/*"""
    base, _, rest = method_arn.partition("/")
    stage = rest.split("/", 1)[0] if rest else "*"
    return f"{base}/{stage}/*/*"


def policy(principal_id: str, effect: str, resource: str, context: dict | None = None) -> dict:
    doc = {"Version": "2012-10-17",
           "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}
    out = {"principalId": principal_id, "policyDocument": doc}
    if context:
        out["context"] = context
    return out


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    resource = api_wildcard(event.get("methodArn", "*"))
    try:
        principal = authenticate(deps(), parse_bearer(event.get("authorizationToken")))
    except Unauthorized as exc:
        logger.info("token refused", extra={"code": exc.code})
        raise Exception("Unauthorized") from None  # API Gateway's contract for a 401
    except Forbidden as exc:
        logger.info("token forbidden", extra={"code": exc.code})
        return policy("forbidden", "Deny", resource, {"code": exc.code, "message": exc.message})
    return policy(principal.principal_id, "Allow", resource, {
        "role": str(principal.role), "principal_id": principal.principal_id,
        "experiment_id": principal.experiment_id or "", "token_hash": principal.token_hash or "",
    })
