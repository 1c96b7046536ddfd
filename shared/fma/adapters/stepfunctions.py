"""Starting the fanout state machine (a FanoutStarter for services/plan_router.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3


class StepFunctionsStarter:
    """StartExecution with {"experiment_id", "round"}; the execution's name (unique per start,
    so a sweeper's retry after a failed execution starts afresh) becomes the lease owner."""

    def __init__(self, state_machine_arn: str, client: Any | None = None):
        self.state_machine_arn = state_machine_arn
        self.client = client or boto3.client("stepfunctions")

    def start(self, experiment_id: str, n: int) -> None:
        name = f"{experiment_id[:40]}-{n:08d}-{uuid.uuid4().hex[:12]}"
        self.client.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                    input=json.dumps({"experiment_id": experiment_id, "round": n}))
