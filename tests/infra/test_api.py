"""The REST API: routes, authorizer, CORS, throttling, logs and gateway errors."""

from __future__ import annotations

import json
import re

from conftest import functions_by_handler, resources


def _methods(template: dict) -> dict[tuple[str, str], dict]:
    """Methods keyed by (path, verb), the path rebuilt from the resource tree."""
    api_resources = resources(template, "AWS::ApiGateway::Resource")

    def path_of(ref: object) -> str:
        if isinstance(ref, dict) and "Ref" in ref and ref["Ref"] in api_resources:
            res = api_resources[ref["Ref"]]["Properties"]
            return f"{path_of(res['ParentId'])}/{res['PathPart']}"
        return ""

    return {
        (path_of(m["Properties"]["ResourceId"]), m["Properties"]["HttpMethod"]): m
        for m in resources(template, "AWS::ApiGateway::Method").values()
    }


def test_health_and_openapi_are_open_and_everything_else_uses_the_token_authorizer(synth):
    methods = _methods(synth.dev)
    assert set(methods) == {
        ("/v1/health", "GET"),
        ("/v1/health", "OPTIONS"),
        ("/v1/openapi.json", "GET"),
        ("/v1/openapi.json", "OPTIONS"),
        ("/v1/{proxy+}", "ANY"),
        ("/v1/{proxy+}", "OPTIONS"),
    }
    assert methods[("/v1/health", "GET")]["Properties"]["AuthorizationType"] == "NONE"
    assert methods[("/v1/openapi.json", "GET")]["Properties"]["AuthorizationType"] == "NONE"
    proxy = methods[("/v1/{proxy+}", "ANY")]["Properties"]
    assert proxy["AuthorizationType"] == "CUSTOM"
    assert proxy["AuthorizerId"]["Ref"].startswith("ApiTokenAuthorizer")
    assert proxy["Integration"]["Type"] == "AWS_PROXY"
    assert proxy["RequestParameters"] == {"method.request.header.Authorization": True}
    assert "RequestValidatorId" in proxy
    api_fn = next(k for k, v in synth.dev["Resources"].items() if v is functions_by_handler(synth.dev)["api"])
    for key in (("/v1/health", "GET"), ("/v1/openapi.json", "GET"), ("/v1/{proxy+}", "ANY")):
        assert api_fn in json.dumps(methods[key]["Properties"]["Integration"]["Uri"])


def test_authorizer_caches_results_for_the_bearer_header(synth):
    authorizer = next(iter(resources(synth.dev, "AWS::ApiGateway::Authorizer").values()))
    props = authorizer["Properties"]
    assert props["Type"] == "TOKEN"
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert props["AuthorizerResultTtlInSeconds"] == 300
    fn = next(k for k, v in synth.dev["Resources"].items() if v is functions_by_handler(synth.dev)["authorizer"])
    assert fn in json.dumps(props["AuthorizerUri"])


def test_preflight_answers_only_the_dashboard_origin_without_auth(synth):
    for key, method in _methods(synth.dev).items():
        if key[1] != "OPTIONS":
            continue
        props = method["Properties"]
        assert props["AuthorizationType"] == "NONE"
        headers = props["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        origin = json.dumps(headers["method.response.header.Access-Control-Allow-Origin"])
        assert "DashboardDistribution" in origin and "*" not in origin


def test_stage_throttles_logs_and_traces(synth):
    stage = next(iter(resources(synth.dev, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["StageName"] == "dev"
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    settings = stage["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == 1_500
    assert settings["ThrottlingBurstLimit"] == 3_000
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["MetricsEnabled"] is True


def test_api_accepts_binary_update_bodies(synth):
    api = next(iter(resources(synth.dev, "AWS::ApiGateway::RestApi").values()))
    assert api["Properties"]["BinaryMediaTypes"] == ["application/octet-stream"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_usage_plan_limits_rate_and_daily_requests(synth):
    plan = next(iter(resources(synth.dev, "AWS::ApiGateway::UsagePlan").values()))
    props = plan["Properties"]
    assert props["Throttle"] == {"RateLimit": 1_500, "BurstLimit": 3_000}
    assert props["Quota"] == {"Limit": 150_000_000, "Period": "DAY"}
    assert len(props["ApiStages"]) == 1


def test_request_validator_checks_parameters(synth):
    validator = next(iter(resources(synth.dev, "AWS::ApiGateway::RequestValidator").values()))
    assert validator["Properties"]["ValidateRequestParameters"] is True


def test_gateway_errors_use_the_contract_error_body_and_cors(synth):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synth.dev, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"UNAUTHORIZED", "ACCESS_DENIED", "THROTTLED", "REQUEST_TOO_LARGE", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(
        responses
    )
    assert responses["UNAUTHORIZED"]["StatusCode"] == "401"
    assert responses["THROTTLED"]["StatusCode"] == "429"
    for props in responses.values():
        body = props["ResponseTemplates"]["application/json"]
        assert body.startswith('{"error": {"code": "')
        assert "DashboardDistribution" in json.dumps(props["ResponseParameters"])


def test_waf_protects_the_prod_api_only(synth):
    assert not resources(synth.dev, "AWS::WAFv2::WebACL")
    acl = next(iter(resources(synth.prod, "AWS::WAFv2::WebACL").values()))["Properties"]
    assert acl["Scope"] == "REGIONAL"
    rules = {r["Name"]: r for r in acl["Rules"]}
    names = list(rules)
    assert names[:2] == ["body-size-limit", "rate-limit-per-ip"]
    size = rules["body-size-limit"]
    assert size["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    pattern = re.compile(size["Statement"]["RegexMatchStatement"]["RegexString"])
    assert [bool(pattern.match(str(n))) for n in (4_194_304, 4_499_999, 4_500_000, 9_999_999, 10**8)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    body = json.loads(acl["CustomResponseBodies"]["too-large"]["Content"])
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # The common rule set's 8 KB body rule would block binary uploads.
    assert "AWSManagedRulesCommonRuleSet" not in names
    association = next(iter(resources(synth.prod, "AWS::WAFv2::WebACLAssociation").values()))
    assert "Stage" in json.dumps(association["Properties"]["ResourceArn"])
