"""Experiment and client items, and the activation of an experiment by its initial model."""

from __future__ import annotations

import functools

from pynamodb.exceptions import DoesNotExist, UpdateError

from fma.adapters import dynamo_shards as shards
from fma.adapters.dynamo_common import decode_cursor, encode_cursor, state_in, transact
from fma.adapters.dynamo_models import (
    LIST_PK,
    ExperimentItem,
    RoundItem,
    exp_pk,
)
from fma.adapters.repo_rounds import round_item
from fma.domain.aggregation_config import AggregationSettings
from fma.domain.clock import iso
from fma.domain.errors import Conflict, NotFound
from fma.domain.experiment import Experiment, RoundPolicy
from fma.domain.records import Page, RoundRecord
from fma.domain.sharding import tally_shards
from fma.domain.states import ExperimentStatus
from fma.domain.update_limits import UpdateLimits


def to_experiment(item: ExperimentItem) -> Experiment:
    return Experiment(
        id=item.pk.removeprefix("EXP#"), name=item.name, owner=item.owner,
        strategy_name=item.strategy_name, strategy_params=item.strategy_params or {},
        policy=RoundPolicy(**item.policy), client_config=item.client_config or {},
        max_update_bytes=int(item.max_update_bytes), status=ExperimentStatus(item.status),
        current_round=int(item.current_round or 0),
        model_version=int(item.model_version) if item.model_version is not None else None,
        model_spec=item.model_spec, model_sha256=item.model_sha256,
        clients=int(item.clients or 0),  # plus its tally shards, summed only if read (domain.counted)
        clients_counter=functools.partial(shards.count_clients, item.pk.removeprefix("EXP#")),
        created_at=item.created_at, updated_at=item.updated_at, model_error=item.model_error,
        initial_sha256=item.initial_sha256, initial_version_id=item.initial_version_id, archived=bool(item.archived),
        update_limits=UpdateLimits.from_json(item.update_limits),
        expected_clients=int(item.expected_clients or 0), shards=int(item.shards or 1),
        aggregation=AggregationSettings.from_json(item.aggregation),
        initial_declared_size=int(item.initial_declared_size) if item.initial_declared_size is not None else None,
        initial_declared_sha256=item.initial_declared_sha256, initial_upload_id=item.initial_upload_id,
        poll_id=item.poll_id,
    )


def experiment_item(exp: Experiment) -> ExperimentItem:
    """The META item of a new experiment (also saved inside the fork transaction of repo_registry)."""
    return ExperimentItem(
        exp_pk(exp.id), "META", name=exp.name, owner=exp.owner, status=str(exp.status),
        strategy_name=exp.strategy_name, strategy_params=exp.strategy_params,
        policy=exp.policy.to_json(), client_config=exp.client_config,
        max_update_bytes=exp.max_update_bytes, update_limits=exp.update_limits.to_json(),
        aggregation=exp.aggregation.to_json(),
        current_round=0, clients=0, shards=exp.shards, tally_shards=tally_shards(exp.shards),
        poll_id=exp.poll_id,
        expected_clients=exp.expected_clients,
        initial_declared_size=exp.initial_declared_size, initial_declared_sha256=exp.initial_declared_sha256,
        initial_upload_id=exp.initial_upload_id,
        created_at=exp.created_at, updated_at=exp.updated_at, list_pk=LIST_PK,
        list_sk=f"{exp.created_at}#{exp.id}", owner_pk=f"OWNER#{exp.owner}",
    )


def list_partitions(owner: str, archived: bool) -> tuple[str, str]:
    """The GSI hash keys an experiment is listed under: live ones and archived ones apart."""
    if archived:
        return f"{LIST_PK}#ARCHIVED", f"ARCHIVED#OWNER#{owner}"
    return LIST_PK, f"OWNER#{owner}"


class ExperimentRepository:
    def create_experiment(self, exp: Experiment) -> None:
        experiment_item(exp).save(condition=ExperimentItem.pk.does_not_exist())

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        try:
            return to_experiment(ExperimentItem.get(exp_pk(experiment_id), "META", consistent_read=True))
        except DoesNotExist:
            return None

    def list_experiments(self, owner: str | None, limit: int, cursor: str | None, archived: bool = False) -> Page:
        """Newest first, through a GSI (never a scan); archived experiments live in partitions of
        their own (`list_partitions`), so either list pages without filtering."""
        list_pk, owner_pk = list_partitions(owner or "", archived)
        if owner is None:
            start = decode_cursor(cursor, {"pk": "EXP#*", "sk": "META", "list_pk": list_pk, "list_sk": "*"})
            result = ExperimentItem.all_index.query(list_pk, scan_index_forward=False, limit=limit,
                                                    last_evaluated_key=start)
        else:
            start = decode_cursor(cursor, {"pk": "EXP#*", "sk": "META", "owner_pk": owner_pk, "list_sk": "*"})
            result = ExperimentItem.owner_index.query(owner_pk, scan_index_forward=False,
                                                      limit=limit, last_evaluated_key=start)
        items = [to_experiment(i) for i in result]
        return Page(items, encode_cursor(result.last_evaluated_key))

    def set_archived(self, experiment_id: str, owner: str, archived: bool) -> Experiment:
        """Hide (or show again) an experiment in lists by moving its list keys; nothing else changes."""
        list_pk, owner_pk = list_partitions(owner, archived)
        item = ExperimentItem(exp_pk(experiment_id), "META")
        try:
            item.update(actions=[ExperimentItem.archived.set(archived), ExperimentItem.list_pk.set(list_pk),
                                 ExperimentItem.owner_pk.set(owner_pk)], condition=ExperimentItem.pk.exists())
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise NotFound(f"experiment {experiment_id} not found", code="EXPERIMENT_NOT_FOUND") from None
            raise
        return to_experiment(item)

    def set_status(self, experiment_id: str, allowed_from: set[ExperimentStatus],
                   target: ExperimentStatus) -> Experiment:
        try:
            item = ExperimentItem(exp_pk(experiment_id), "META")
            item.update(
                actions=[ExperimentItem.status.set(str(target)), ExperimentItem.updated_at.set(iso())],
                condition=ExperimentItem.status.is_in(*[str(s) for s in allowed_from]),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"experiment cannot move to {target} from its current status",
                               code="INVALID_TRANSITION") from None
            raise
        return to_experiment(item)

    def set_model_error(self, experiment_id: str, reason: str) -> None:
        ExperimentItem(exp_pk(experiment_id), "META").update(
            actions=[ExperimentItem.model_error.set(reason[:1000]), ExperimentItem.updated_at.set(iso())],
            condition=ExperimentItem.pk.exists())

    def activate(self, experiment_id: str, spec: list[dict], sha256: str, first_round: RoundRecord,
                 version_id: str | None = None) -> bool:
        """PENDING_MODEL -> RUNNING with round 1 OPEN (and the validated object version pinned),
        in one transaction; False if already done."""
        pin = ExperimentItem.initial_version_id

        def build(t):
            t.update(ExperimentItem(exp_pk(experiment_id), "META"), actions=[
                ExperimentItem.status.set(str(ExperimentStatus.RUNNING)), ExperimentItem.model_spec.set(spec),
                ExperimentItem.model_sha256.set(sha256), ExperimentItem.model_version.set(0),
                ExperimentItem.initial_sha256.set(sha256), pin.set(version_id) if version_id else pin.remove(),
                ExperimentItem.current_round.set(1), ExperimentItem.updated_at.set(iso()),
                ExperimentItem.model_error.remove(),
            ], condition=state_in(ExperimentItem.status, "activate"))
            t.save(round_item(first_round), condition=RoundItem.pk.does_not_exist())
        return not transact(build)
