"""ApiFirewall: a regional WAF web ACL on the API stage (config ``waf``; on for prod).

A body-size limit (a ``Content-Length`` of 4.5 MB or more is refused with 413 and the API's
error body: such a request could never reach the API function, whose synchronous invocation
is capped at 6 MB after base64), a per-IP rate limit, and AWS managed IP-reputation and
known-bad-input rule groups. The common rule set is left out on purpose: its 8 KB body-size
rule would block the binary update uploads this API exists to receive. Exposes ``web_acl``.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.config import Config

# Content-Length >= 4_500_000: eight or more digits, 5-9 followed by six, or 45-49 and five.
TOO_LARGE_CONTENT_LENGTH = r"^(\d{8,}|[5-9]\d{6}|4[5-9]\d{5})$"
TOO_LARGE_BODY = (
    '{"error": {"code": "PAYLOAD_TOO_LARGE", "message": "Request body too large: upload '
    'updates above 4 MiB with the presigned POST.", "details": {}}}'
)
MANAGED_RULE_GROUPS = ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet")


class ApiFirewall(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, stage: apigw.Stage) -> None:
        super().__init__(scope, construct_id)
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name="body-size-limit",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(
                    block=wafv2.CfnWebACL.BlockActionProperty(
                        custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                            response_code=413, custom_response_body_key="too-large"
                        )
                    )
                ),
                statement=wafv2.CfnWebACL.StatementProperty(
                    regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                        regex_string=TOO_LARGE_CONTENT_LENGTH,
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(single_header={"Name": "content-length"}),
                        text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
                    )
                ),
                visibility_config=_visibility("body-size-limit"),
            ),
            wafv2.CfnWebACL.RuleProperty(
                name="rate-limit-per-ip",
                priority=1,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        limit=config.waf_rate_limit_per_5min, aggregate_key_type="IP"
                    )
                ),
                visibility_config=_visibility("rate-limit-per-ip"),
            ),
        ]
        for priority, group in enumerate(MANAGED_RULE_GROUPS, start=2):
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=group,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group
                        )
                    ),
                    visibility_config=_visibility(group),
                )
            )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={
                "too-large": wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=TOO_LARGE_BODY
                )
            },
            visibility_config=_visibility(f"fma-{config.stage}-api"),
            rules=rules,
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=stage.stage_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )
