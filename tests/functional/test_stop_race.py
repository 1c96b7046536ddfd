"""Issue 11, "STOP racing an aggregation leaves an OPEN round": the stop and the failing of
whichever round is current are one transaction, and a publish requires the experiment still
RUNNING (or PAUSED) in its own transaction, so no interleaving leaves a STOPPED experiment with
an OPEN round or publishes a model after the stop. The aggregation that loses removes the
model, state and manifest versions it wrote: the bucket holds no object of an unpublished round."""

from __future__ import annotations

import random
import threading
import time

from harness import update_bytes
from hostile import bucket_objects, model, submit_and_deliver, world

from fma.adapters import repo_buffers, repo_lifecycle
from fma.local import dispatch

TRIALS = 12


def sealed_experiment(stack, total_rounds: int = 2, **body) -> tuple[str, str, dict]:
    rounds = body.pop("rounds", {"min_updates": 2, "total_rounds": total_rounds})
    dev, exp_id, clients = world(stack, clients=2, rounds=rounds, **body)
    for client in clients:
        assert submit_and_deliver(stack, exp_id, client, update_bytes(model(), 3, 1))["status"] == "ACCEPTED"
    [payload] = stack.invoker.calls
    stack.invoker.calls.clear()
    return dev, exp_id, payload


def stop(stack, dev: str, exp_id: str) -> int:
    return stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "STOPPED"}).status


def rounds(stack, dev: str, exp_id: str) -> dict[int, dict]:
    return {r["round"]: r for r in stack.api("GET", f"/v1/experiments/{exp_id}/rounds", dev).json()["rounds"]}


def assert_consistent(stack, dev: str, exp_id: str) -> dict:
    """No ended experiment has an OPEN round; a STOPPED one published no model after its stop."""
    exp = stack.experiment(dev, exp_id)
    by_n = rounds(stack, dev, exp_id)
    if exp["status"] in ("STOPPED", "COMPLETED"):
        assert all(r["state"] != "OPEN" for r in by_n.values()), (exp["status"], by_n)
    if exp["status"] == "STOPPED":
        current = by_n[exp["current_round"]]
        assert current["state"] == "FAILED" and current["reason"].startswith("EXPERIMENT_STOPPED")
        published = [n for n, r in by_n.items() if r["state"] == "PUBLISHED"]
        assert exp["model_version"] == max(published, default=0)
        assert all(n < exp["current_round"] for n in published)  # each publish opened a round the stop failed
    assert_no_unpublished_objects(stack, exp_id, by_n)
    return exp


def assert_no_unpublished_objects(stack, exp_id: str, by_n: dict[int, dict]) -> None:
    """No version of a model, manifest or server state exists for a round that never published
    (the loser of a publish removed what it wrote); a published round keeps its own."""
    for n in range(1, max(by_n) + 2):
        objects = [o for prefix in (f"models/{exp_id}/{n:08d}.", f"state/{exp_id}/{n:08d}.")
                   for o in bucket_objects(stack, prefix)]
        if by_n.get(n, {}).get("state") == "PUBLISHED":
            assert {o[0] for o in objects} >= {f"models/{exp_id}/{n:08d}.safetensors",
                                              f"models/{exp_id}/{n:08d}.manifest.json"}, (n, objects)
        else:
            assert objects == [], (n, by_n.get(n, {}).get("state"), objects)


def test_stop_during_an_aggregation_publishes_nothing_and_opens_no_round(stack, monkeypatch):
    dev, exp_id, payload = sealed_experiment(stack)
    original = repo_lifecycle.LifecycleRepository.publish_round

    def stop_first(self, *args, **kwargs):  # the stop takes effect between the strategy and the publish
        assert stop(stack, dev, exp_id) == 200
        return original(self, *args, **kwargs)

    monkeypatch.setattr(repo_lifecycle.LifecycleRepository, "publish_round", stop_first)
    result = dispatch.run_aggregate(payload)
    assert result["status"] == "lost_lease"
    # the loser wrote the round's model and manifest, then removed both (and nothing else)
    assert sorted(result["discarded"]["removed"]) == [f"models/{exp_id}/00000001.manifest.json",
                                                      f"models/{exp_id}/00000001.safetensors"]
    assert result["discarded"]["left"] == []
    exp = assert_consistent(stack, dev, exp_id)
    assert exp["status"] == "STOPPED" and exp["model_version"] == 0 and exp["current_round"] == 1
    assert set(rounds(stack, dev, exp_id)) == {1}


def test_stop_that_read_the_round_before_a_publish_fails_the_round_the_publish_opened(stack, monkeypatch):
    dev, exp_id, payload = sealed_experiment(stack)
    original = repo_lifecycle._round_or_none
    raced = []

    def publish_in_between(experiment_id, n):
        item = original(experiment_id, n)
        if not raced:  # the stop has read round 1 as current; the aggregation now publishes it
            raced.append(dispatch.run_aggregate(payload)["status"])
        return item

    monkeypatch.setattr(repo_lifecycle, "_round_or_none", publish_in_between)
    assert stop(stack, dev, exp_id) == 200
    assert raced == ["published"]
    exp = assert_consistent(stack, dev, exp_id)
    by_n = rounds(stack, dev, exp_id)
    assert exp["status"] == "STOPPED" and exp["current_round"] == 2 and exp["model_version"] == 1
    assert by_n[1]["state"] == "PUBLISHED" and by_n[2]["state"] == "FAILED"


def test_stop_racing_aggregation_never_leaves_an_open_round_or_a_later_publish(stack, monkeypatch):
    """Randomized interleavings: threads, random start offsets and random pauses before each
    transaction of the lifecycle code. Every other trial starts the stop when the aggregation
    reaches its publish (whatever the machine's speed, the stop then races the publish
    transaction itself: both orders happen, and a loser has written its outputs)."""
    rng = random.Random(11)
    original, original_publish = repo_lifecycle.transact, repo_lifecycle.LifecycleRepository.publish_round
    publishing = threading.Event()

    def jittered(build, *args, **kwargs):
        time.sleep(rng.uniform(0, 0.01))
        return original(build, *args, **kwargs)

    def announced(self, *args, **kwargs):
        publishing.set()
        return original_publish(self, *args, **kwargs)

    monkeypatch.setattr(repo_lifecycle, "transact", jittered)
    monkeypatch.setattr(repo_lifecycle.LifecycleRepository, "publish_round", announced)
    outcomes = []
    for trial in range(TRIALS):
        dev, exp_id, payload = sealed_experiment(stack, total_rounds=1 + trial % 2)
        results: dict[str, object] = {}
        offsets = {"aggregate": rng.uniform(0, 0.05), "stop": rng.uniform(0, 0.3 if trial % 2 else 0.012)}
        publishing.clear()

        def run(name, fn, results=results, offsets=offsets, at_publish=trial % 2 == 0):
            if name == "stop" and at_publish:
                publishing.wait(timeout=60)
            time.sleep(offsets[name])
            results[name] = fn()

        threads = [threading.Thread(target=run, args=("aggregate", lambda p=payload: dispatch.run_aggregate(p))),
                   threading.Thread(target=run, args=("stop", lambda d=dev, e=exp_id: stop(stack, d, e)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        exp = assert_consistent(stack, dev, exp_id)
        assert results["stop"] in (200, 409), results
        assert (exp["status"] == "STOPPED") == (results["stop"] == 200)
        outcomes.append((exp["status"], exp["model_version"]))
    # both orders happened: a stop before the publish and a publish before the stop
    assert {o for o in outcomes if o[0] == "STOPPED"} and len(set(outcomes)) >= 2, outcomes


def test_a_publish_while_paused_still_opens_the_next_round(stack):
    dev, exp_id, payload = sealed_experiment(stack)
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "PAUSED"}).status == 200
    assert dispatch.run_aggregate(payload)["status"] == "published"
    exp = stack.experiment(dev, exp_id)
    assert exp["status"] == "PAUSED" and exp["current_round"] == 2 and rounds(stack, dev, exp_id)[2]["state"] == "OPEN"


def test_a_stateful_strategy_stopped_before_its_publish_leaves_no_model_state_or_manifest(stack, monkeypatch):
    dev, exp_id, payload = sealed_experiment(stack, strategy={"name": "fedadam"})
    original = repo_lifecycle.LifecycleRepository.publish_round

    def stop_first(self, *args, **kwargs):
        assert stop(stack, dev, exp_id) == 200
        return original(self, *args, **kwargs)

    monkeypatch.setattr(repo_lifecycle.LifecycleRepository, "publish_round", stop_first)
    result = dispatch.run_aggregate(payload)
    assert result["status"] == "lost_lease" and f"state/{exp_id}/00000001.safetensors" in result["discarded"]["removed"]
    assert_consistent(stack, dev, exp_id)


def test_an_async_version_stopped_before_its_publish_leaves_no_object(stack, monkeypatch):
    dev, exp_id, payload = sealed_experiment(stack, rounds={"mode": "async", "buffer_size": 2, "total_rounds": 2})
    original = repo_buffers.BufferRepository.publish_version

    def stop_first(self, *args, **kwargs):
        assert stop(stack, dev, exp_id) == 200
        return original(self, *args, **kwargs)

    monkeypatch.setattr(repo_buffers.BufferRepository, "publish_version", stop_first)
    assert dispatch.run_aggregate(payload)["status"] == "lost_lease"
    exp = stack.experiment(dev, exp_id)
    assert exp["status"] == "STOPPED" and exp["model_version"] == 0
    assert bucket_objects(stack, f"models/{exp_id}/00000001.") == []
