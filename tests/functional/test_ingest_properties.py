"""Property test through the public interface: arbitrary bytes and arbitrary JSON headers,
uploaded for a requested update and delivered as an S3 event, end REJECTED with a reason in one
ingest pass; the handler reports no failure, and no counter but `rejected` nor any model moves."""

from __future__ import annotations

import json
import struct

from hostile import bucket_objects, changed, model_header, table_items, update_item_key, update_key, world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 20

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**420), max_value=10**420)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=20)


def framed(text: str, body: bytes = b"") -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw + body


def near_valid(num_examples: str, metrics: str | None) -> bytes:
    """model()'s layout with hostile metadata: everything but the metadata is right."""
    metadata = {"fma.num_examples": num_examples} | ({"fma.metrics": metrics} if metrics is not None else {})
    return framed(json.dumps(model_header(metadata)), bytes(36))


bad_counts = st.sampled_from(["\u0661", "\uff17", " 7", "7 ", "1_0", "+7", "-1", "0", "1e3", "9" * 30, ""])
bad_metric_values = st.one_of(
    st.integers(min_value=10**309, max_value=10**420), st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]),
    st.lists(scalars, max_size=3).map(json.dumps), st.text(max_size=5).map(json.dumps), st.booleans().map(json.dumps),
    st.integers(min_value=3, max_value=20_000).map(lambda d: "[" * d + "]" * d),
)
hostile_files = st.one_of(
    st.binary(min_size=1, max_size=512),
    json_values.map(lambda v: framed(json.dumps(v))),
    st.integers(min_value=50, max_value=60_000).map(lambda d: framed('{"w": ' + "[" * d + "]" * d + "}")),
    st.tuples(bad_counts, st.none() | json_values.map(json.dumps)).map(lambda t: near_valid(*t)),
    bad_metric_values.map(lambda v: near_valid("7", '{"loss": ' + str(v) + "}")),
)


def test_arbitrary_update_bytes_through_ingest_end_rejected_and_change_no_counter_or_model(stack):
    dev, exp_id, clients = world(stack, clients=EXAMPLES + 5, rounds={"min_updates": 1000, "total_rounds": 2})
    free = list(clients)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile_files)
    def one_upload(data):
        client_id, token = free.pop()
        before, models = table_items(stack), bucket_objects(stack, "models/")
        assert stack.submit(exp_id, 1, token, data).status == 202
        assert stack.deliver(update_key(exp_id, 1, client_id)) == {"batchItemFailures": []}
        [mine] = stack.round(token, exp_id, 1)["updates"]
        assert mine["status"] == "REJECTED" and ":" in mine["reason"], (mine, data[:200])
        assert changed(before, table_items(stack)) <= {update_item_key(exp_id, 1, client_id),
                                                       (f"EXP#{exp_id}", "ROUND#00000001")}
        assert bucket_objects(stack, "models/") == models

    one_upload()
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["accepted"] == 0 and rnd["rejected"] == EXAMPLES + 5 - len(free) and rnd["state"] == "OPEN"
