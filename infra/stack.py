"""The FMA stack: composes one construct per concern and declares the stable outputs.

Construction order follows the data each concern needs: the dashboard's CloudFront origin
goes into the API's CORS settings, and the API URL goes into the dashboard's config.json.
cdk-nag acknowledgements for constructs that CDK creates internally (custom-resource
handlers) live here; every other acknowledgement sits next to the resource it is about.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.assets import LAYER_EXCLUDES, layer_code_dir
from infra.config import Config
from infra.constructs.aggregation import Aggregation
from infra.constructs.api import Api
from infra.constructs.dashboard import Dashboard
from infra.constructs.fanout import Fanout
from infra.constructs.function import (
    ARCHITECTURE,
    RUNTIME,
    FunctionKit,
    acknowledge,
    logical_id,
)
from infra.constructs.ingestion import Ingestion
from infra.constructs.observability import Observability
from infra.constructs.storage import Storage
from infra.constructs.sweeper import Sweeper

# Handlers that CDK itself adds to the stack (their code and policies are aws-cdk-lib's).
BASIC_EXECUTION = (
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]"
)
CDK_RUNTIME = "aws-cdk-lib picks the runtime of its own custom-resource handler."


def _internal_findings(site_bucket: str) -> dict[str, dict[str, str]]:
    """``{construct id prefix: {finding: reason}}`` for CDK's custom-resource handlers."""
    deployment = (
        "CDK's BucketDeployment handler syncs web/ from the CDK asset bucket into the dashboard "
        "bucket with CDK's own read/write grants on exactly those two buckets."
    )
    deployment_findings = {
        f"AwsSolutions-IAM5[{finding}]": deployment
        for finding in (
            *(f"Action::s3:{a}*" for a in ("GetObject", "GetBucket", "List", "DeleteObject", "Abort")),
            f"Resource::<{site_bucket}.Arn>/*",
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
        )
    }
    return {
        "BucketNotificationsHandler": {
            BASIC_EXECUTION: "CDK's S3 bucket-notifications handler logs with the basic execution policy.",
            "AwsSolutions-L1": CDK_RUNTIME,
        },
        "Custom::S3AutoDeleteObjectsCustomResourceProvider": {
            BASIC_EXECUTION: "CDK's auto-delete-objects handler (dev stages only) logs with the basic policy.",
        },
        "Custom::CDKBucketDeployment": {
            BASIC_EXECUTION: "CDK's BucketDeployment handler logs with the basic execution policy.",
            "AwsSolutions-L1": CDK_RUNTIME,
            "AwsSolutions-IAM5[Resource::*]": (
                "CDK's BucketDeployment handler invalidates the dashboard's CloudFront cache; CDK "
                "grants cloudfront:CreateInvalidation/GetInvalidation on *."
            ),
            **deployment_findings,
        },
    }


class FmaStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        for key, value in {"project": "fma", "stage": config.stage, **config.tags}.items():
            Tags.of(self).add(key, value)

        layer_dir = layer_code_dir(config.path(config.layer_dir))
        layer = lambda_.LayerVersion(
            self,
            "RuntimeLayer",
            code=lambda_.Code.from_asset(str(layer_dir), exclude=list(LAYER_EXCLUDES)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="fma package and its pinned runtime dependencies",
        )
        self.storage = Storage(self, "Storage", config=config)
        kit = FunctionKit(config=config, layer=layer, table_name=self.storage.table.table_name)
        self.dashboard = Dashboard(self, "Dashboard", config=config, storage=self.storage)
        self.api = Api(self, "Api", config=config, kit=kit, storage=self.storage, cors_origin=self.dashboard.origin)
        self.aggregation = Aggregation(self, "Aggregation", config=config, kit=kit, storage=self.storage)
        aggregate = self.aggregation.function
        self.fanout = Fanout(self, "Fanout", config=config, kit=kit, storage=self.storage, aggregate=aggregate)
        self.ingestion = Ingestion(self, "Ingestion", config=config, kit=kit, storage=self.storage, aggregate=aggregate)
        self.sweeper = Sweeper(self, "Sweeper", config=config, kit=kit, storage=self.storage, aggregate=aggregate)
        for starter in (self.ingestion.function, self.sweeper.function):
            self.fanout.allow_start(starter, config)
        self.dashboard.publish(api_url=self.api.url, web_dir=config.path(config.web_dir))
        self.functions = {
            "api": self.api.handler,
            "authorizer": self.api.authorizer_function,
            "ingest": self.ingestion.function,
            "aggregate": aggregate,
            "aggregate_piece": self.fanout.piece,
            "sweeper": self.sweeper.function,
        }
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            functions=self.functions,
            rest_api=self.api.rest_api,
            queues={"ingest": self.ingestion.queue},
            dead_letter_queues={"ingest": self.ingestion.dlq, "aggregate": self.aggregation.dlq},
            state_machines={"fanout": self.fanout.state_machine},
        )
        self._outputs()
        self._acknowledge_cdk_internals()

    def _outputs(self) -> None:
        outputs = {
            "ApiUrl": (self.api.url, "Base URL of the v1 API (what the SDK and CLI take)"),
            "DashboardUrl": (self.dashboard.url, "The dashboard (CloudFront)"),
            "BucketName": (self.storage.bucket.bucket_name, "Models and updates bucket"),
            "TableName": (self.storage.table.table_name, "DynamoDB table (fma token create)"),
            "AlarmTopicArn": (self.observability.topic.topic_arn, "SNS topic of the alarms"),
        }
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)

    def _acknowledge_cdk_internals(self) -> None:
        findings = _internal_findings(logical_id(self.dashboard.bucket))
        for child in self.node.children:
            for prefix, acks in findings.items():
                if child.node.id.startswith(prefix):
                    acknowledge(child, acks)
