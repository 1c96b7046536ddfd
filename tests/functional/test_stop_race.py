"""Issue 11, "STOP racing an aggregation leaves an OPEN round": the stop and the failing of
whichever round is current are one transaction, and a publish requires the experiment still
RUNNING (or PAUSED) in its own transaction, so no interleaving leaves a STOPPED experiment with
an OPEN round or publishes a model after the stop."""

from __future__ import annotations

import random
import threading
import time

from harness import update_bytes
from hostile import model, submit_and_deliver, world

from fma.adapters import repo_lifecycle
from fma.local import dispatch

TRIALS = 12


def sealed_experiment(stack, total_rounds: int = 2) -> tuple[str, str, dict]:
    dev, exp_id, clients = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": total_rounds})
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
    return exp


def test_stop_during_an_aggregation_publishes_nothing_and_opens_no_round(stack, monkeypatch):
    dev, exp_id, payload = sealed_experiment(stack)
    original = repo_lifecycle.LifecycleRepository.publish_round

    def stop_first(self, *args, **kwargs):  # the stop takes effect between the strategy and the publish
        assert stop(stack, dev, exp_id) == 200
        return original(self, *args, **kwargs)

    monkeypatch.setattr(repo_lifecycle.LifecycleRepository, "publish_round", stop_first)
    assert dispatch.run_aggregate(payload)["status"] == "lost_lease"
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
    transaction of the lifecycle code."""
    rng = random.Random(11)
    original = repo_lifecycle.transact

    def jittered(build, *args, **kwargs):
        time.sleep(rng.uniform(0, 0.01))
        return original(build, *args, **kwargs)

    monkeypatch.setattr(repo_lifecycle, "transact", jittered)
    outcomes = []
    for trial in range(TRIALS):
        dev, exp_id, payload = sealed_experiment(stack, total_rounds=1 + trial % 2)
        results: dict[str, object] = {}
        offsets = {"aggregate": rng.uniform(0, 0.05), "stop": rng.uniform(0, 0.3)}

        def run(name, fn, results=results, offsets=offsets):
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
