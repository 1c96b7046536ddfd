"""The hot-key meter (fma.local.hot_keys): moto counts every DynamoDB item write per partition
key of the base table and of each GSI, and the load benchmark prints the hottest one."""

from __future__ import annotations

import os

import boto3
import numpy as np
import pytest
from harness import update_bytes

from fma.adapters.dynamo_models import DUE_PK, INDEX_ALL, INDEX_DUE
from fma.domain.auth import Role
from fma.local import hot_keys

TABLE = os.environ["FMA_TABLE_NAME"]


@pytest.fixture
def meter(stack):
    m = hot_keys.install()
    m.reset()
    yield m
    m.reset()


def _ddb():
    return boto3.client("dynamodb", region_name="us-east-1")


def test_a_put_counts_on_its_partition_key_and_on_the_gsi_key_it_holds(meter):
    _ddb().put_item(TableName=TABLE, Item={"pk": {"S": "EXP#a"}, "sk": {"S": "ROUND#1"}, "due_pk": {"S": DUE_PK},
                                           "due_sk": {"S": "1"}})
    counts = meter.snapshot()
    assert counts.writes == {("table", "EXP#a"): 1, (INDEX_DUE, DUE_PK): 1}
    assert counts.operations == {"put_item": 1}


def test_a_refused_conditional_write_is_counted_apart_and_leaving_an_index_is_a_removal(meter):
    ddb = _ddb()
    key = {"pk": {"S": "EXP#a"}, "sk": {"S": "META"}}
    ddb.put_item(TableName=TABLE, Item=key | {"list_pk": {"S": "EXPERIMENT"}, "list_sk": {"S": "x"}})
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(TableName=TABLE, Item=key, ConditionExpression="attribute_not_exists(pk)")
    ddb.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE list_pk, list_sk")
    counts = meter.snapshot()
    assert counts.writes == {("table", "EXP#a"): 2, (INDEX_ALL, "EXPERIMENT"): 1}
    assert counts.refused == {("table", "EXP#a"): 1}
    assert counts.gsi_removals == {(INDEX_ALL, "EXPERIMENT"): 1}


def test_every_item_of_a_transaction_counts_its_condition_checks_too(meter):
    ddb = _ddb()
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "EXP#a"}, "sk": {"S": "META"}})
    meter.reset()
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "EXP#a"}, "sk": {"S": "UPDATE#1"}}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "TOKEN#t"}, "sk": {"S": "TOKEN"}},
                    "UpdateExpression": "SET uses = :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": {"S": "EXP#a"}, "sk": {"S": "META"}},
                            "ConditionExpression": "attribute_exists(pk)"}},
    ])
    counts = meter.snapshot()
    assert counts.writes == {("table", "EXP#a"): 2, ("table", "TOKEN#t"): 1}
    assert counts.transactional == counts.writes


def test_reads_are_counted_per_key_and_index(meter):
    ddb = _ddb()
    ddb.get_item(TableName=TABLE, Key={"pk": {"S": "EXP#a"}, "sk": {"S": "META"}})
    ddb.query(TableName=TABLE, IndexName=INDEX_DUE, KeyConditionExpression="due_pk = :d",
              ExpressionAttributeValues={":d": {"S": DUE_PK}})
    assert meter.snapshot().reads == {("table", "EXP#a"): 1, (INDEX_DUE, DUE_PK): 1}


def test_a_round_through_the_handlers_reports_its_hottest_key_per_accepted_update(stack, meter):
    """Given a round of four clients through the real handlers, the report names the hottest key
    with its share of all writes and its writes per accepted update."""
    dev = stack.token(Role.DEVELOPER, "dev-1")
    initial = {"w": np.zeros(4, np.float32)}
    exp_id = stack.create_experiment(dev, initial, rounds={"min_updates": 4, "total_rounds": 1})
    for i, (client_id, token) in enumerate(stack.enroll(dev, exp_id, 4)):
        assert stack.submit(exp_id, 1, token, update_bytes({"w": np.full(4, i, np.float32)}, 10, 1)).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    assert stack.round(dev, exp_id, 1)["state"] == "PUBLISHED"
    counts = meter.snapshot()
    index, key, writes = counts.hottest()
    assert writes == max(counts.writes.values()) and writes > 0
    line = hot_keys.hottest_line(counts, accepted=4)
    assert line.startswith(f"HOTTEST_KEY share={writes / counts.total_writes():.4f} per_accept={writes / 4:.4f} ")
    table = hot_keys.table_lines(counts, accepted=4)
    assert table[2].startswith(f"| {hot_keys._label(index, key)} | {writes} |")
    assert hot_keys.Counts.from_json(counts.to_json()) == counts


def test_key_patterns_elide_ids_and_hashes():
    assert hot_keys.key_pattern("EXP#3fa9c0#S7") == "EXP#{id}#S7"
    assert hot_keys.key_pattern("TOKEN#" + "a" * 64) == "TOKEN#{hash}"
    assert hot_keys.key_pattern("DUE_UPLOAD") == "DUE_UPLOAD"


N_CLIENTS = 200


def test_a_round_of_200_clients_writes_no_key_more_than_a_fifth_of_the_accepts(stack, meter):
    """Issues 13 and 18: the whole round (200 registrations through one enrollment token, their
    uploads and polls, the seal and the publish) writes no partition key, base table or GSI, more
    than 0.2 times per accepted update (the built-in default expected_clients, 1000: 125 shards)."""
    dev = stack.token(Role.DEVELOPER, "dev-1")
    exp_id = stack.create_experiment(dev, {"w": np.zeros(2, np.float32)}, expected_clients=1000,
                                     rounds={"min_updates": N_CLIENTS, "total_rounds": 1})
    clients = stack.enroll(dev, exp_id, N_CLIENTS)
    for i, (client_id, token) in enumerate(clients):
        assert stack.submit(exp_id, 1, token, update_bytes({"w": np.full(2, i % 7, np.float32)}, 1, 1)).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    assert stack.round(dev, exp_id, 1)["state"] == "PUBLISHED"
    counts = meter.snapshot()
    _, _, writes = counts.hottest()
    assert writes / N_CLIENTS <= 0.2, hot_keys.table_lines(counts, accepted=N_CLIENTS)
