"""Dashboard: the static site in ``web/`` on a private bucket behind CloudFront.

CloudFront reaches the bucket through origin access control, redirects HTTP to HTTPS and
adds security headers (CSP allowing API calls to this region's API Gateway only). The site
is published by :meth:`publish` with a generated ``config.json`` (``{"apiUrl": ...}``) once
the API exists: the API needs the dashboard origin for CORS first. Exposes ``bucket``,
``distribution``, ``origin`` and ``url``.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra.config import Config
from infra.constructs.function import acknowledge
from infra.constructs.storage import Storage, private_bucket_props

#: the pointer objects' key prefix (fma.services.pointer) and the distribution path serving them
POINTER_PREFIX = "pointers/"
POINTER_PATH = f"/{POINTER_PREFIX}*"

SITE_EXCLUDES = (
    "node_modules",
    "node_modules/**",
    "tests",
    "tests/**",
    "**/.*",
    "*.md",
    "package*.json",
    "config.json",
)


def content_security_policy() -> str:
    api_origin = f"https://*.execute-api.{Aws.REGION}.amazonaws.com"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {api_origin}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


class Dashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.bucket = s3.Bucket(
            self,
            "Site",
            **private_bucket_props(config),
            server_access_logs_bucket=storage.access_logs,
            server_access_logs_prefix="site-bucket/",
        )
        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="FMA dashboard security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(), override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365),
                    include_subdomains=True,
                    override=True,
                ),
                xss_protection=cloudfront.ResponseHeadersXSSProtection(protection=True, mode_block=True, override=True),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"FMA dashboard ({config.stage})",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                response_headers_policy=headers,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
            ),
            additional_behaviors={POINTER_PATH: self._pointer_behavior(storage, headers)},
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=storage.access_logs,
            log_file_prefix="cloudfront/",
        )
        acknowledge(
            self.distribution,
            {
                "AwsSolutions-CFR1": "A research dashboard has no geographic restriction need.",
                "AwsSolutions-CFR2": (
                    "Static, read-only files; the data it shows comes from the API, which "
                    "has its own throttling and an optional WAF (config `waf`)."
                ),
                "AwsSolutions-CFR4": (
                    "Uses the default *.cloudfront.net certificate, for which CloudFront "
                    "fixes the TLS policy; set a custom domain to choose TLSv1.2_2021."
                ),
            },
        )
        self._allow_pointer_reads(storage)
        self.origin = f"https://{self.distribution.distribution_domain_name}"
        self.url = f"{self.origin}/"

    def _pointer_behavior(
        self, storage: Storage, headers: cloudfront.ResponseHeadersPolicy
    ) -> cloudfront.BehaviorOptions:
        """Clients poll their experiment's pointer object (fma.services.pointer) here: the models
        bucket through origin access control, cached at most 5 s, so 100,000 pollers cost S3 a
        few GETs per second per edge and no API request. The bucket policy admits `pointers/*`
        only (`_allow_pointer_reads`)."""
        cache = cloudfront.CachePolicy(
            self,
            "PointerCache",
            comment="FMA pointer objects: at most 5 s stale",
            default_ttl=Duration.seconds(5),
            max_ttl=Duration.seconds(5),
            min_ttl=Duration.seconds(0),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.none(),
            header_behavior=cloudfront.CacheHeaderBehavior.none(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            enable_accept_encoding_gzip=True,
        )
        return cloudfront.BehaviorOptions(
            # its own OAC, not with_origin_access_control: that grants GetObject on the whole bucket
            origin=origins.S3BucketOrigin.with_bucket_defaults(
                storage.bucket,
                origin_access_control_id=cloudfront.S3OriginAccessControl(
                    self, "PointerAccess", description="FMA pointer objects (pointers/* only)"
                ).origin_access_control_id,
            ),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cache,
            response_headers_policy=headers,
        )

    def _allow_pointer_reads(self, storage: Storage) -> None:
        distribution_arn = (
            f"arn:{Aws.PARTITION}:cloudfront::{Aws.ACCOUNT_ID}:distribution/{self.distribution.distribution_id}"
        )
        storage.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudFrontReadsPointersOnly",
                actions=["s3:GetObject"],
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                resources=[storage.bucket.arn_for_objects(f"{POINTER_PREFIX}*")],
                conditions={"StringEquals": {"AWS:SourceArn": distribution_arn}},
            )
        )

    def publish(self, *, api_url: str, web_dir: Path) -> s3deploy.BucketDeployment:
        """Deploy ``web_dir`` (if it has files) and ``config.json`` to the site bucket."""
        sources = [s3deploy.Source.json_data("config.json", {"apiUrl": api_url})]
        if web_dir.is_dir() and any(p.is_file() for p in web_dir.rglob("*")):
            sources.insert(0, s3deploy.Source.asset(str(web_dir), exclude=list(SITE_EXCLUDES)))
        deployment = s3deploy.BucketDeployment(
            self,
            "Publish",
            sources=sources,
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
        )
        return deployment
