"""Fanout aggregation: the state machine that runs a round over many functions (issue 14).

    Start (aggregate fn: lease, plan object) -> Started? -> Reduce (aggregate fn) -> NeedsMap?
      -> Map (DISTRIBUTED: items from the S3 JSON the reduce wrote; each item one
         aggregate_piece invocation, retried with backoff) -> Advance -> Reduce ... -> Done
    A Reduce or Map that fails for good -> FailRound (aggregate fn: round FAILED with the
    error as reason) -> Failed (the execution fails: the alarm sees it).

Ingest (at the seal) and the sweeper start it instead of the async invoke when a round's plan
is fanout (services/plan_router.py). Exposes ``state_machine``, ``piece`` (the child
function) and ``log_group``.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import Config, single_max_model_bytes
from infra.constructs.function import FmaFunction, FunctionKit, acknowledge, logical_id, removal_policy, retention
from infra.constructs.storage import Storage

ROUND = {"experiment_id.$": "$.experiment_id", "round.$": "$.round"}
#: the piece function reads the experiment and round items (state_saved), never writes.
TABLE_READ = ("dynamodb:GetItem", "dynamodb:Query")


class Fanout(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, kit: FunctionKit, storage: Storage,
        aggregate: FmaFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        self.piece = self._piece_function(config, kit, storage)
        self._coordinator(aggregate, config, storage)
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(config.log_retention_days),
                                       removal_policy=removal_policy(config))
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="FMA fanout aggregation of one round (services/fanout.py)",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(config, storage, aggregate)),
            timeout=Duration.hours(config.fanout_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        # The Map's ItemReader reads the item lists the reduce writes under partials/ (and, its
        # bucket given by path, CDK adds no grant of its own on the whole bucket).
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=storage.objects("partials/")))
        machine = logical_id(self.state_machine)
        executions = ("arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
                      f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{machine}"}}]}}]}}')
        acknowledge(self.state_machine, {
            f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/partials/*]": (
                "The Map's ItemReader reads the item lists the reduce writes under partials/."),
            "AwsSolutions-IAM5[Resource::*]": (
                "X-Ray and CloudWatch Logs delivery support no resource-level permissions."),
            **{f"AwsSolutions-IAM5[Resource::<{logical_id(fn.function)}.Arn>:*]": (
                "Invoking any version of this one function (CDK's LambdaInvoke grant).")
               for fn in (aggregate, self.piece)},
            f"AwsSolutions-IAM5[Resource::{executions}:*]": (
                "The Distributed Map describes and stops the child executions of this state machine only."),
            f"AwsSolutions-IAM5[Resource::{executions}/*:*]": (
                "The Distributed Map redrives the child executions of this state machine only."),
        })

    def allow_start(self, fn: FmaFunction, config: Config) -> None:
        """`fn` (ingest, the sweeper) starts executions for rounds whose plan is fanout."""
        for name, value in {"FMA_FANOUT_STATE_MACHINE": self.state_machine.state_machine_arn,
                            "FMA_FANOUT_MIN_UPDATES": str(config.fanout_min_updates),
                            "FMA_FANOUT_MIN_BYTES": str(config.fanout_min_bytes),
                            "FMA_FANOUT_SINGLE_MAX_MODEL_BYTES": str(single_max_model_bytes(config))}.items():
            fn.function.add_environment(name, value)
        self.state_machine.grant_start_execution(fn.role)

    def _coordinator(self, aggregate: FmaFunction, config: Config, storage: Storage) -> None:
        """The aggregate function runs start/reduce/fail: it writes the plan and item lists
        and reads the pieces under partials/."""
        aggregate.function.add_environment("FMA_READ_CONCURRENCY", str(config.read_concurrency))
        aggregate.grant(["s3:GetObject", "s3:PutObject"], storage.objects("partials/"))
        acknowledge(aggregate.role, {
            f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/partials/*]": (
                "Scoped to the partials/ prefix of fanout rounds (plan, item lists, pieces).")})

    def _piece_function(self, config: Config, kit: FunctionKit, storage: Storage) -> FmaFunction:
        fn = kit.create(
            self, "PieceFunction", name="aggregate_piece", memory_mb=config.fanout_piece_memory_mb,
            timeout_s=config.fanout_piece_timeout_s, metrics=False,
            environment={"FMA_BUCKET_NAME": storage.bucket.bucket_name,
                         "FMA_READ_CONCURRENCY": str(config.read_concurrency),
                         **config.strategy_environment},
        )
        fn.grant(TABLE_READ, [storage.table.table_arn])
        fn.grant(["s3:GetObject"], storage.objects("updates/", "models/", "state/", "partials/"))
        fn.grant(["s3:GetObjectVersion"], storage.objects("updates/", "models/"))  # the pinned initial model
        fn.grant(["s3:PutObject"], storage.objects("partials/"))
        fn.grant(["s3:ListBucket"], [storage.bucket.bucket_arn], StringLike={"s3:prefix": ["state/*"]})
        acknowledge(fn.role, {
            f"AwsSolutions-IAM5[Resource::<{logical_id(storage.bucket)}.Arn>/{p}/*]": (
                f"Scoped to the {p}/ prefix a fanout child reads or writes (its partial objects).")
            for p in ("updates", "models", "state", "partials")
        })
        return fn

    def _definition(self, config: Config, storage: Storage, aggregate: FmaFunction) -> sfn.IChainable:
        def invoke(name: str, fn: FmaFunction, payload: dict, result_path: str | None) -> tasks.LambdaInvoke:
            return tasks.LambdaInvoke(self, name, lambda_function=fn.function, payload_response_only=True,
                                      payload=sfn.TaskInput.from_object(payload),
                                      result_path=result_path if result_path else sfn.JsonPath.DISCARD)

        fail_round = invoke("FailRound", aggregate, {"task": "fail", **ROUND, "error.$": "$.error"}, None)
        fail_round.next(sfn.Fail(self, "Failed", error="FanoutFailed",
                                 cause="the round was handed to the failure path"))
        done = sfn.Succeed(self, "Done")
        start = invoke("Start", aggregate, {"task": "start", **ROUND, "owner.$": "$$.Execution.Name"}, "$.start")
        where = sfn.Pass(self, "Where", parameters={"bucket": storage.bucket.bucket_name}, result_path="$.items")
        init = sfn.Pass(self, "Init", parameters={"next_complete": 0, "spent.$": "$.start.spent"},
                        result_path="$.reduce")
        where.next(init)
        reduce = invoke("Reduce", aggregate, {
            "task": "reduce", **ROUND, "owner.$": "$.start.owner", "complete.$": "$.reduce.next_complete",
            "spent.$": "$.reduce.spent", "started_at.$": "$.start.started_at"}, "$.reduce")
        for task in (start, reduce):
            task.add_retry(errors=["States.ALL"], max_attempts=config.aggregate_retry_attempts,
                           interval=Duration.seconds(5), backoff_rate=2.0)
            task.add_catch(fail_round, errors=["States.ALL"], result_path="$.error")
        pieces = self._map(config, storage)
        pieces.add_catch(fail_round, errors=["States.ALL"], result_path="$.error")
        pieces.next(reduce)
        started = sfn.Choice(self, "Started?").when(
            sfn.Condition.string_equals("$.start.status", "started"), where).otherwise(done)
        init.next(reduce)
        needs_map = sfn.Choice(self, "NeedsMap?").when(
            sfn.Condition.string_equals("$.reduce.status", "map"), pieces).otherwise(done)
        reduce.next(needs_map)
        return start.next(started)

    def _map(self, config: Config, storage: Storage) -> sfn.DistributedMap:
        """One child per piece; items from the S3 JSON list the reduce wrote; the reduce's
        `next_complete` rides along so the loop's next Reduce combines this pass."""
        pieces = sfn.DistributedMap(
            self, "Map",
            item_reader=sfn.S3JsonItemReader(bucket_name_path=sfn.JsonPath.string_at("$.items.bucket"),
                                             key=sfn.JsonPath.string_at("$.reduce.items_key")),
            max_concurrency=config.fanout_max_concurrency,
            tolerated_failure_percentage=config.fanout_tolerated_failure_percentage,
            result_path=sfn.JsonPath.DISCARD,
        )
        child = tasks.LambdaInvoke(self, "Piece", lambda_function=self.piece.function, payload_response_only=True,
                                   result_path=sfn.JsonPath.DISCARD)
        child.add_retry(errors=["States.ALL"], max_attempts=config.fanout_piece_retries,
                        interval=Duration.seconds(2), backoff_rate=2.0, jitter_strategy=sfn.JitterType.FULL)
        pieces.item_processor(child, mode=sfn.ProcessorMode.DISTRIBUTED, execution_type=sfn.ProcessorType.STANDARD)
        return pieces
