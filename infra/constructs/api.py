"""Api: the REST API, its token authorizer and the api and authorizer functions.

``GET /v1/health`` and ``GET /v1/openapi.json`` are open; every other path goes through ``ANY /v1/{proxy+}`` behind a
cached Lambda TOKEN authorizer to the api function (proxy integration). Preflight
``OPTIONS`` answers only the dashboard origin. Gateway-generated errors (401, 403, 413, 429,
5xx) carry the same JSON error body as the handlers and the CORS header, so the dashboard
can read them. Exposes ``rest_api``, ``handler``, ``authorizer_function`` and ``url``.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import Config
from infra.constructs.firewall import ApiFirewall
from infra.constructs.function import (
    FmaFunction,
    FunctionKit,
    acknowledge,
    logical_id,
    removal_policy,
    retention,
)
from infra.constructs.storage import TABLE_READ_WRITE, Storage

CORS_HEADERS = ("Authorization", "Content-Type", "If-None-Match")
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# (response type, status, error code) for errors API Gateway answers itself.
GATEWAY_ERRORS = (
    (apigw.ResponseType.UNAUTHORIZED, "401", "UNAUTHORIZED"),
    (apigw.ResponseType.ACCESS_DENIED, "403", "FORBIDDEN"),
    (apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "404", "NOT_FOUND"),
    (apigw.ResponseType.BAD_REQUEST_PARAMETERS, "400", "INVALID_INPUT"),
    (apigw.ResponseType.REQUEST_TOO_LARGE, "413", "PAYLOAD_TOO_LARGE"),
    (apigw.ResponseType.THROTTLED, "429", "TOO_MANY_REQUESTS"),
    (apigw.ResponseType.QUOTA_EXCEEDED, "429", "TOO_MANY_REQUESTS"),
    (apigw.ResponseType.DEFAULT_4_XX, None, "BAD_REQUEST"),
    (apigw.ResponseType.DEFAULT_5_XX, None, "INTERNAL"),
)


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        kit: FunctionKit,
        storage: Storage,
        cors_origin: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = self._api_function(config, kit, storage, cors_origin)
        self.authorizer_function = kit.create(
            self,
            "AuthorizerFunction",
            name="authorizer",
            memory_mb=config.authorizer_memory_mb,
            timeout_s=config.authorizer_timeout_s,
            metrics=False,
            environment={"FMA_CLIENT_TOKEN_GRACE_SECONDS": str(config.client_token_grace_seconds)},
        )
        # Resolving a token is one GetItem by its hash: nothing else.
        self.authorizer_function.grant(["dynamodb:GetItem"], [storage.table.table_arn])

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(config.access_log_retention_days),
            removal_policy=removal_policy(config),
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"fma-{config.stage}",
            description="FMA federated model aggregation API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=["application/octet-stream"],
            cloud_watch_role=True,
            # The account-wide API Gateway logging role outlives any one stage: never delete it.
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
            ),
        )
        if not config.waf:
            acknowledge(
                self.rest_api.deployment_stage,
                {
                    "AwsSolutions-APIG3": (
                        "WAF is off on this stage (config `waf`) to keep an idle stage free; "
                        "stage throttling and the authorizer still apply. Prod enables it."
                    ),
                },
            )
        self._routes(config, cors_origin)
        self._gateway_responses(cors_origin)
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name=f"fma-{config.stage}",
            description="Default throttle and daily quota of the FMA API stage.",
            throttle=apigw.ThrottleSettings(rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit),
            quota=apigw.QuotaSettings(limit=config.api_quota_per_day, period=apigw.Period.DAY),
            api_stages=[apigw.UsagePlanPerApiStage(stage=self.rest_api.deployment_stage)],
        )
        self.url = f"{self.rest_api.url}v1"
        self.firewall = (
            ApiFirewall(self, "Firewall", config=config, stage=self.rest_api.deployment_stage) if config.waf else None
        )
        acknowledge(
            self.rest_api,
            {
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]": (
                    "The account-level API Gateway logging role uses the AWS managed policy "
                    "made for exactly this purpose."
                ),
            },
        )

    def _api_function(self, config: Config, kit: FunctionKit, storage: Storage, cors_origin: str) -> FmaFunction:
        fn = kit.create(
            self,
            "ApiFunction",
            name="api",
            memory_mb=config.api_memory_mb,
            timeout_s=config.api_timeout_s,
            metrics=False,
            environment={
                "FMA_BUCKET_NAME": storage.bucket.bucket_name,
                "FMA_PRESIGN_SECONDS": str(config.presign_seconds),
                "FMA_DIRECT_UPLOAD_MAX_BYTES": str(config.direct_upload_max_bytes),
                "FMA_MAX_UPDATE_BYTES": str(config.max_update_bytes),
                "FMA_MULTIPART_THRESHOLD_BYTES": str(config.multipart_threshold_bytes),
                "FMA_MULTIPART_PART_BYTES": str(config.multipart_part_bytes),
                "FMA_RECONCILE_GRACE_SECONDS": str(config.reconcile_grace_seconds),
                "FMA_POLL_RETRY_AFTER_SECONDS": str(config.poll_retry_after_seconds),
                "FMA_DEFAULT_EXPECTED_CLIENTS": str(config.experiment_expected_clients),
                # a round waiting for its model longer than one lease is reported stuck
                "FMA_LEASE_SECONDS": str(config.lease_seconds),
                "FMA_CLIENT_TOKEN_MAX_SECONDS": str(config.client_token_max_seconds),
                "FMA_CLIENT_TOKEN_GRACE_SECONDS": str(config.client_token_grace_seconds),
                "FMA_CORS_ORIGIN": cors_origin,
                # clients poll pointer objects through the dashboard's distribution (`/pointers/*`)
                "FMA_POINTER_BASE_URL": cors_origin,
                **config.strategy_environment,
            },
        )
        fn.grant(
            TABLE_READ_WRITE,
            [storage.table.table_arn, *storage.index_arns("experiments-all", "experiments-by-owner")],
        )
        # Presigned URLs are signed with this role: it must hold what they allow.
        objects = storage.objects("models/", "updates/")
        fn.grant(["s3:PutObject", "s3:GetObject"], objects)
        storage.grant_pointer_writes(fn)
        # GET .../rounds/{n}/artifacts presigns the update versions a manifest pinned (issue 16);
        # every download (and a fork's copy) of version 0 names the version activation validated.
        fn.grant(["s3:GetObjectVersion"], storage.objects("updates/", "models/"))
        # Multipart uploads (issue 13 item 4): the completion checks the parts (ListParts) and
        # names the key's uploads in flight; asking again aborts the earlier upload.
        fn.grant(["s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"], objects)
        fn.grant(["s3:ListBucketMultipartUploads"], [storage.bucket.bucket_arn])
        acknowledge(
            fn.role,
            {
                f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/{p}/*]": (
                    f"Scoped to the {p}/ prefix the api writes and presigns (DESIGN section 3)."
                )
                for p in ("models", "updates")
            },
        )
        return fn

    def _routes(self, config: Config, cors_origin: str) -> None:
        integration = apigw.LambdaIntegration(self.handler.function, proxy=True, allow_test_invoke=False)
        authorizer = apigw.TokenAuthorizer(
            self,
            "TokenAuthorizer",
            handler=self.authorizer_function.function,
            identity_source=apigw.IdentitySource.header("Authorization"),
            validation_regex=r"^[Bb]earer \S+$",
            results_cache_ttl=Duration.seconds(config.authorizer_cache_seconds),
        )
        validator = self.rest_api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        cors = {
            "allow_origins": [cors_origin],
            "allow_headers": list(CORS_HEADERS),
            "allow_methods": list(CORS_METHODS),
            "expose_headers": ["ETag", "Retry-After"],
            "max_age": Duration.hours(1),
        }
        v1 = self.rest_api.root.add_resource("v1")
        health = v1.add_resource("health")
        health.add_method("GET", integration, authorization_type=apigw.AuthorizationType.NONE)
        health.add_cors_preflight(**cors)
        openapi = v1.add_resource("openapi.json")
        openapi.add_method("GET", integration, authorization_type=apigw.AuthorizationType.NONE)
        openapi.add_cors_preflight(**cors)
        proxy = v1.add_resource("{proxy+}")
        proxy.add_method(
            "ANY",
            integration,
            authorizer=authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            request_validator=validator,
            request_parameters={"method.request.header.Authorization": True},
        )
        proxy.add_cors_preflight(**cors)
        for method in (
            health.node.find_child("GET"),
            health.node.find_child("OPTIONS"),
            openapi.node.find_child("GET"),
            openapi.node.find_child("OPTIONS"),
            proxy.node.find_child("OPTIONS"),
        ):
            acknowledge(
                method,
                {
                    "AwsSolutions-APIG4": "Health, the OpenAPI document and CORS preflight are public by design.",
                    "AwsSolutions-COG4": "Health, the OpenAPI document and CORS preflight are public by design.",
                },
            )
        acknowledge(
            proxy.node.find_child("ANY"),
            {
                "AwsSolutions-COG4": (
                    "FMA issues its own bearer tokens (sha256-hashed in DynamoDB) resolved by "
                    "a Lambda TOKEN authorizer; there is no Cognito user pool by design."
                ),
            },
        )

    def _gateway_responses(self, cors_origin: str) -> None:
        for response_type, status, code in GATEWAY_ERRORS:
            self.rest_api.add_gateway_response(
                response_type.response_type.title().replace("_", ""),
                type=response_type,
                status_code=status,
                response_headers={"Access-Control-Allow-Origin": f"'{cors_origin}'"},
                templates={
                    "application/json": (
                        f'{{"error": {{"code": "{code}", "message": $context.error.messageString, "details": {{}}}}}}'
                    )
                },
            )
