"""pynamodb models of the single table (DESIGN section 4).

Every item type is its own Model class over the same table; `configure_table` binds them all
to a table name and endpoint at cold start (tests and local mode point them at moto).
"""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from fma.adapters.dynamo_retry import CLIENT_MAX_RETRIES

INDEX_ALL = "experiments-all"
INDEX_OWNER = "experiments-by-owner"
INDEX_DUE = "due-rounds"
LIST_PK = "EXPERIMENT"
DUE_PK = "DUE"
DUE_UPLOAD_PK = "DUE_UPLOAD"


class _Base(Model):
    class Meta:
        table_name = "fma"
        region = "us-east-1"
        host: str | None = None
        # botocore's standard-mode retries of throttling and 5xx (fma.adapters.dynamo_retry)
        max_retry_attempts = CLIENT_MAX_RETRIES

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class ExperimentsAllIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = INDEX_ALL
        projection = AllProjection()

    list_pk = UnicodeAttribute(hash_key=True)
    list_sk = UnicodeAttribute(range_key=True)


class ExperimentsByOwnerIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = INDEX_OWNER
        projection = AllProjection()

    owner_pk = UnicodeAttribute(hash_key=True)
    list_sk = UnicodeAttribute(range_key=True)


class DueRoundsIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = INDEX_DUE
        projection = AllProjection()

    due_pk = UnicodeAttribute(hash_key=True)
    due_sk = UnicodeAttribute(range_key=True)


class TableSchema(_Base):
    """Declares every key attribute and index, so `create_table` builds the full table."""

    list_pk = UnicodeAttribute(null=True)
    list_sk = UnicodeAttribute(null=True)
    owner_pk = UnicodeAttribute(null=True)
    due_pk = UnicodeAttribute(null=True)
    due_sk = UnicodeAttribute(null=True)
    all_index = ExperimentsAllIndex()
    owner_index = ExperimentsByOwnerIndex()
    due_index = DueRoundsIndex()


class TokenItem(_Base):
    """pk = TOKEN#{sha256}, sk = TOKEN. `ttl` lets DynamoDB drop expired tokens."""

    role = UnicodeAttribute()
    principal_id = UnicodeAttribute()
    experiment_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute(null=True)
    max_uses = NumberAttribute(null=True)
    uses = NumberAttribute(default=0)
    revoked = BooleanAttribute(default=False)
    minted_by = UnicodeAttribute(null=True)
    ttl = NumberAttribute(null=True)


class ExperimentItem(_Base):
    """pk = EXP#{id}, sk = META."""

    name = UnicodeAttribute()
    owner = UnicodeAttribute()
    status = UnicodeAttribute()
    strategy_name = UnicodeAttribute()
    strategy_params = JSONAttribute(default=dict)
    policy = JSONAttribute()
    client_config = JSONAttribute(default=dict)
    max_update_bytes = NumberAttribute()
    current_round = NumberAttribute(default=0)
    model_version = NumberAttribute(null=True)
    model_spec = JSONAttribute(null=True)
    model_sha256 = UnicodeAttribute(null=True)
    model_error = UnicodeAttribute(null=True)
    initial_sha256 = UnicodeAttribute(null=True)
    initial_version_id = UnicodeAttribute(null=True)
    # `initial_model: {size, sha256}` declared at creation (a multipart upload of the initial model)
    initial_declared_size = NumberAttribute(null=True)
    initial_declared_sha256 = UnicodeAttribute(null=True)
    initial_upload_id = UnicodeAttribute(null=True)
    archived = BooleanAttribute(null=True)
    update_limits = JSONAttribute(null=True)
    aggregation = JSONAttribute(null=True)
    clients = NumberAttribute(default=0)
    # how many partition keys its per-client items and round counters are spread over (dynamo_shards)
    shards = NumberAttribute(null=True)
    # how many shards its enrolled-clients and enrollment-token-use tallies are spread over; absent
    # on experiments created when tallies were capped at 32 (dynamo_shards.tallies_of)
    tally_shards = NumberAttribute(null=True)
    # names the experiment's pointer object (services/pointer.py); absent: no pointer
    poll_id = UnicodeAttribute(null=True)
    expected_clients = NumberAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    list_pk = UnicodeAttribute(null=True)
    list_sk = UnicodeAttribute(null=True)
    owner_pk = UnicodeAttribute(null=True)
    all_index = ExperimentsAllIndex()
    owner_index = ExperimentsByOwnerIndex()


class RoundItem(_Base):
    """pk = EXP#{id}, sk = ROUND#{n:08d}. `due_*` is set while the sweeper must watch it."""

    round = NumberAttribute()
    state = UnicodeAttribute()
    # a sync round's count while OPEN is the sum of its counter shards; the seal writes it here (final);
    # an async buffer counts here from its first accept (final: capacity must hold exactly, repo_buffers)
    accepted = NumberAttribute(default=0)
    final = BooleanAttribute(null=True)
    rejected = NumberAttribute(default=0)
    late = NumberAttribute(default=0)
    min_updates = UnicodeAttribute()
    deadline = NumberAttribute(null=True)
    opened_at = NumberAttribute()
    sealed_at = NumberAttribute(null=True)
    published_at = NumberAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_expires = NumberAttribute(null=True)
    attempts = NumberAttribute(default=0)
    aggregation_seconds = NumberAttribute(null=True)
    metrics = JSONAttribute(null=True)
    info = JSONAttribute(null=True)
    model_sha256 = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    # sweeps of this round that raised (repo_failures): bounded, then the round FAILS.
    sweep_errors = NumberAttribute(null=True)
    last_sweep_error = UnicodeAttribute(null=True)
    sealed_by = UnicodeAttribute(null=True)
    aggregation_started_at = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    due_pk = UnicodeAttribute(null=True)
    due_sk = UnicodeAttribute(null=True)
    due_index = DueRoundsIndex()


class CounterShardItem(_Base):
    """pk = EXP#{id}#N{k}, sk = ROUND#{n:08d}: shard k of round n's accepted count (dynamo_shards)."""

    accepted = NumberAttribute(default=0)
    closed = BooleanAttribute(null=True)


class TallyShardItem(_Base):
    """pk = EXP#{id}#N{k}, sk = CLIENTS (enrolled clients of shard k) or pk = TOKEN#{hash}#U{j},
    sk = USES (shard j's uses of an enrollment token, at most its part of max_uses): repo_enrollment."""

    count = NumberAttribute(default=0)


class ClientItem(_Base):
    """pk = EXP#{id}#P{k} (the client's shard), sk = CLIENT#{client_id}."""

    client_id = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    token_hash = UnicodeAttribute(null=True)
    revoked = BooleanAttribute(null=True)


class UpdateItem(_Base):
    """pk = EXP#{id}#P{k} (k: the client's shard, dynamo_shards), sk = UPDATE#{n:08d}#{client_id}."""

    round = NumberAttribute()
    client_id = UnicodeAttribute()
    status = UnicodeAttribute()
    num_examples = NumberAttribute(null=True)
    metrics = JSONAttribute(null=True)
    sha256 = UnicodeAttribute(null=True)
    size = NumberAttribute(null=True)
    version_id = UnicodeAttribute(null=True)
    declared_sha256 = UnicodeAttribute(null=True)
    declared_size = NumberAttribute(null=True)
    upload_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    # unexpected ingest failures so far (repo_failures): bounded, then the update is FAILED.
    attempts = NumberAttribute(null=True)
    updated_at = NumberAttribute()
    # async mode: the version whose buffer this update joined (repo_buffers).
    applied_in = NumberAttribute(null=True)
    due_pk = UnicodeAttribute(null=True)
    due_sk = UnicodeAttribute(null=True)
    due_index = DueRoundsIndex()


class BufferItem(_Base):
    """pk = EXP#{id}, sk = BUFFER#{version:08d}#{round:08d}#{client_id}: an update in the buffer
    that publishes `version` (async mode), written with its acceptance, listed by one query."""

    version = NumberAttribute()
    round = NumberAttribute()
    client_id = UnicodeAttribute()


class EvaluationItem(_Base):
    """pk = EXP#{id}, sk = EVAL#{n:08d}#{client_id}: a client's metrics of a global model."""

    round = NumberAttribute()
    client_id = UnicodeAttribute()
    num_examples = NumberAttribute()
    metrics = JSONAttribute()
    created_at = NumberAttribute()


class RefusalItem(_Base):
    """pk = EXP#{id}, sk = REFUSED#{n:08d}#{client_id}: uploads the API refused (during a pause)."""

    round = NumberAttribute()
    client_id = UnicodeAttribute()
    code = UnicodeAttribute()
    reason = UnicodeAttribute()
    count = NumberAttribute(default=0)
    first_at = NumberAttribute()
    last_at = NumberAttribute()
class IdempotencyItem(_Base):
    """pk = IDEM#{sha256(principal, key)}, sk = IDEM: one spread-out item per key (no hot key)."""

    fingerprint = UnicodeAttribute()
    state = UnicodeAttribute()
    lock_expires = NumberAttribute()
    expires_at = NumberAttribute()
    response_status = NumberAttribute(null=True)
    response_body = UnicodeAttribute(null=True)
    ttl = NumberAttribute()


class RegistryNameItem(_Base):
    """pk = REGISTRY, sk = NAME#{name}: one per model name (GET /v1/registry lists this partition;
    it is written once per registered version or stage change, far below a hot key's rate)."""

    name = UnicodeAttribute()
    owner = UnicodeAttribute()
    versions = NumberAttribute(default=0)
    latest_version = UnicodeAttribute(null=True)
    production_version = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class RegistryVersionItem(_Base):
    """pk = REG#{name}, sk = VER#{semver sort key}: immutable except `stage`."""

    name = UnicodeAttribute()
    version = UnicodeAttribute()
    experiment_id = UnicodeAttribute()
    round = NumberAttribute()
    sha256 = UnicodeAttribute()
    size = NumberAttribute()
    stage = UnicodeAttribute()
    notes = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    manifest_key = UnicodeAttribute()
    manifest_sha256 = UnicodeAttribute()


class LinkItem(_Base):
    """pk = EXP#{id}, sk = LINK#PARENT | LINK#CHILD#{child} | LINK#REG#{name}#{version}: an
    experiment's lineage and registry versions, read with one query of its own partition."""

    kind = UnicodeAttribute()
    other_id = UnicodeAttribute(null=True)
    round = NumberAttribute()
    name = UnicodeAttribute(null=True)
    version = UnicodeAttribute(null=True)
    stage = UnicodeAttribute(null=True)
    manifest_sha256 = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()


ALL_MODELS: tuple[type[Model], ...] = (TableSchema, TokenItem, ExperimentItem, RoundItem, ClientItem,
                                       UpdateItem, EvaluationItem, IdempotencyItem, RegistryNameItem,
                                       RegistryVersionItem, LinkItem, BufferItem, RefusalItem, CounterShardItem,
                                       TallyShardItem)


def configure_table(table_name: str, region: str = "us-east-1", host: str | None = None) -> None:
    """Point every model at one table; drops cached connections so a new endpoint takes effect."""
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.region = region
        model.Meta.host = host
        model._connection = None


def create_table() -> None:
    """Create the table as infra defines it (local mode and tests); TTL on `ttl`."""
    if not TableSchema.exists():
        TableSchema.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        TableSchema._get_connection().connection.update_time_to_live(TableSchema.Meta.table_name, "ttl")


def exp_pk(experiment_id: str) -> str:
    return f"EXP#{experiment_id}"


def round_sk(n: int) -> str:
    return f"ROUND#{n:08d}"


def update_sk(n: int, client_id: str) -> str:
    return f"UPDATE#{n:08d}#{client_id}"


def buffer_sk(version: int, n: int, client_id: str) -> str:
    return f"BUFFER#{version:08d}#{n:08d}#{client_id}"
