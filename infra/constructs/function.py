"""One FMA Lambda function: arm64 Python 3.12, its own role, log group, layer and env.

Every function gets a dedicated role whose only built-in permissions are writing to its own
log group and sending X-Ray traces; the concern that owns the function grants the rest,
next to the environment variable that names the resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.assets import function_code_dir
from infra.config import Config

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
SERVICE_NAME = "fma"
METRICS_NAMESPACE = "FMA"


NAG_PACK = "AwsSolutions"


def acknowledge(scope: Construct, findings: Mapping[str, str]) -> None:
    """Acknowledge cdk-nag findings on ``scope``: ``{finding id: reason}``.

    Ids are finding-specific (``AwsSolutions-IAM5[Resource::...]``) and get the plugin
    prefix cdk-nag 3 prints (``AwsSolutions::``); every one needs a written reason.
    """
    acks = []
    for rule, reason in findings.items():
        if not reason.strip():
            raise ValueError(f"acknowledgement of {rule} needs a reason")
        prefixed = rule if rule.startswith(f"{NAG_PACK}::") else f"{NAG_PACK}::{rule}"
        acks.append(Acknowledgment(id=prefixed, reason=reason))
    Validations.of(scope).acknowledge(*acks)


def removal_policy(config: Config) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY


def logical_id(construct: Construct) -> str:
    """The logical id cdk-nag prints for ``construct``'s CloudFormation resource."""
    stack = Stack.of(construct)
    return stack.resolve(stack.get_logical_id(construct.node.default_child))


class FmaFunction(Construct):
    """A Lambda function of the FMA service.

    ``name`` is the folder under ``functions/``; the handler is ``<name>.handler.handler``.
    Exposes ``function``, ``role`` and ``log_group``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        code_dir: Path,
        layer: lambda_.ILayerVersion,
        config: Config,
        table_name: str,
        memory_mb: int,
        timeout_s: int,
        environment: Mapping[str, str] | None = None,
        description: str = "",
        metrics: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(config.log_retention_days),
            removal_policy=removal_policy(config),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"FMA {name} function ({config.stage})",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description or f"FMA {name}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"{name}.handler.handler",
            code=lambda_.Code.from_asset(str(code_dir)),
            layers=[layer],
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # Exactly what functions/<name>/settings.py declares (tests/infra/test_settings.py).
            environment={
                "FMA_TABLE_NAME": table_name,
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                **({"POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE} if metrics else {}),
                "POWERTOOLS_LOG_LEVEL": config.log_level,
                **(environment or {}),
            },
        )
        # Logs: only this function's own group (CreateLogGroup is not needed: it exists).
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level "
                    "permissions; CDK adds them for active tracing."
                ),
            },
        )
        acknowledge(
            self.function,
            {
                "AwsSolutions-L1": (
                    "Python 3.12 is the platform's pinned runtime: the layer's wheels are "
                    "cp312 (see layers/requirements.txt); upgrade both together."
                ),
            },
        )

    def grant(self, actions: Sequence[str], resources: Sequence[str], **conditions: object) -> None:
        """Add one least-privilege statement to this function's role."""
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(actions),
                resources=list(resources),
                conditions=dict(conditions) or None,
            )
        )


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch Logs retention period of at least ``days``."""
    return next((v for d, v in sorted(_RETENTION.items()) if d >= days), _RETENTION[3653])


@dataclass(frozen=True)
class FunctionKit:
    """What every function shares: settings, the layer, the table name, staged code."""

    config: Config
    layer: lambda_.ILayerVersion
    table_name: str

    def create(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        memory_mb: int,
        timeout_s: int,
        environment: Mapping[str, str] | None = None,
        metrics: bool = True,
    ) -> FmaFunction:
        """``metrics=False`` for a function that emits no powertools metrics (no namespace)."""
        return FmaFunction(
            scope,
            construct_id,
            name=name,
            code_dir=function_code_dir(name, self.config.path(self.config.functions_build_dir)),
            layer=self.layer,
            config=self.config,
            table_name=self.table_name,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            environment=environment,
            metrics=metrics,
        )
