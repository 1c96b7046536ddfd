"""Observability: one CloudWatch dashboard and alarms that notify an SNS topic.

Alarms: errors and throttles of every function, messages in either dead-letter queue, API
5xx, ingestion falling behind, updates FAILED by a fault, sweeper items that keep raising,
and aggregations running close to their timeout. The
dashboard adds API latency, updates accepted/rejected, round and aggregation seconds, model
bytes and the aggregate function's peak memory (from its REPORT log lines). Custom metrics
are the ones the functions emit with powertools in namespace ``FMA`` (DESIGN section 10),
dimension ``service=fma``. Exposes ``topic``, ``dashboard`` and ``alarms``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import Config
from infra.constructs.function import METRICS_NAMESPACE, SERVICE_NAME, FmaFunction, acknowledge

FIVE_MINUTES = Duration.minutes(5)


def fma_metric(name: str, statistic: str = "Sum") -> cw.Metric:
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE_NAME},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        functions: Mapping[str, FmaFunction],
        rest_api: apigw.RestApi,
        queues: Mapping[str, sqs.IQueue],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        state_machines: Mapping[str, sfn.IStateMachine] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name=f"FMA {config.stage} alarms", enforce_ssl=True)
        acknowledge(
            self.topic,
            {
                "AwsSolutions-SNS2": (
                    "Alarm notifications carry no user data; CloudWatch cannot publish to a "
                    "topic encrypted with the AWS managed SNS key."
                ),
            },
        )
        if config.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(config.alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}
        for name, fn in functions.items():
            self._alarm(
                f"{name}-errors",
                fn.function.metric_errors(period=FIVE_MINUTES),
                1,
                f"The {name} function raised errors.",
            )
            self._alarm(
                f"{name}-throttles",
                fn.function.metric_throttles(period=FIVE_MINUTES),
                1,
                f"The {name} function was throttled.",
            )
        for name, queue in dead_letter_queues.items():
            depth = queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum")
            self._alarm(f"{name}-dlq", depth, 1, f"Messages are waiting in the {name} DLQ.")
        for name, queue in queues.items():
            age = queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum")
            self._alarm(f"{name}-backlog", age, 600, f"The {name} queue is falling behind.")
        for name, machine in (state_machines or {}).items():
            self._alarm(f"{name}-executions-failed", machine.metric_failed(period=FIVE_MINUTES), 1,
                        f"A {name} state machine execution failed: its round went to the failure path.")
            self._alarm(f"{name}-executions-timed-out", machine.metric_timed_out(period=FIVE_MINUTES), 1,
                        f"A {name} state machine execution timed out.")
        self._alarm(
            "rounds-failed",
            fma_metric("RoundsFailed"),
            1,
            "A round FAILED: its deadline policy said fail, or aggregation ran out of retries.",
        )
        self._alarm(
            "updates-failed",
            fma_metric("UpdatesFailed"),
            1,
            "An update FAILED: its ingest raised for a reason not the client's, max_ingest_attempts times.",
        )
        self._alarm(
            "sweep-errors",
            fma_metric("SweepErrors"),
            5,
            "Sweeper items keep raising (each is pushed back and FAILED at the bound).",
        )
        self._alarm("api-5xx", rest_api.metric_server_error(period=FIVE_MINUTES), 5, "The API answered 5xx responses.")
        aggregate = functions["aggregate"].function
        near_timeout = aggregate.metric_duration(period=FIVE_MINUTES, statistic="Maximum")
        self._alarm(
            "aggregate-near-timeout",
            near_timeout,
            0.8 * config.aggregate_timeout_s * 1000,
            "An aggregation used more than 80% of its timeout: raise memory or timeout.",
        )
        self.dashboard = self._dashboard(config, functions, rest_api, dead_letter_queues)

    def _alarm(self, name: str, metric: cw.IMetric, threshold: float, description: str) -> None:
        alarm = cw.Alarm(
            self,
            f"Alarm-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms[name] = alarm

    def _dashboard(
        self,
        config: Config,
        functions: Mapping[str, FmaFunction],
        rest_api: apigw.RestApi,
        dead_letter_queues: Mapping[str, sqs.IQueue],
    ) -> cw.Dashboard:
        fns = {name: fn.function for name, fn in functions.items()}
        latency = [
            rest_api.metric_latency(period=FIVE_MINUTES, statistic=s, label=f"latency {s}")
            for s in ("p50", "p90", "p99")
        ]
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"fma-{config.stage}")
        dashboard.add_widgets(
            cw.GraphWidget(title="API latency (ms)", left=latency, width=12),
            cw.GraphWidget(
                title="API errors",
                left=[
                    rest_api.metric_server_error(period=FIVE_MINUTES, label="5xx"),
                    rest_api.metric_client_error(period=FIVE_MINUTES, label="4xx"),
                ],
                right=[rest_api.metric_count(period=FIVE_MINUTES, label="requests")],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Updates",
                left=[fma_metric("UpdatesAccepted"), fma_metric("UpdatesRejected")],
                right=[fma_metric("RoundsPublished")],
                width=8,
            ),
            cw.GraphWidget(
                title="Round and aggregation seconds",
                left=[
                    fma_metric("RoundSeconds", "Average"),
                    fma_metric("AggregationSeconds", "Average"),
                    fma_metric("AggregationSeconds", "Maximum"),
                ],
                width=8,
            ),
            cw.GraphWidget(title="Model bytes", left=[fma_metric("ModelBytes", "Maximum")], width=8),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Lambda errors",
                left=[f.metric_errors(period=FIVE_MINUTES, label=n) for n, f in fns.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Lambda throttles",
                left=[f.metric_throttles(period=FIVE_MINUTES, label=n) for n, f in fns.items()],
                width=8,
            ),
            cw.GraphWidget(
                title="Dead-letter queue depth",
                left=[
                    q.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum", label=n)
                    for n, q in dead_letter_queues.items()
                ],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Aggregate duration (ms)",
                left=[
                    fns["aggregate"].metric_duration(period=FIVE_MINUTES, statistic=s, label=s)
                    for s in ("Average", "Maximum")
                ],
                width=12,
            ),
            cw.LogQueryWidget(
                title="Aggregate peak memory (MB)",
                log_group_names=[functions["aggregate"].log_group.log_group_name],
                query_lines=[
                    'filter @type = "REPORT"',
                    "stats max(@maxMemoryUsed / 1000 / 1000) as peak_mb, "
                    "max(@memorySize / 1000 / 1000) as limit_mb by bin(5m)",
                ],
                view=cw.LogQueryVisualizationType.LINE,
                width=12,
            ),
        )
        return dashboard
