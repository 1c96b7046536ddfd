"""Issue 11, "there is no way to remove the experiment": developers archive (hide) experiments."""

from __future__ import annotations

import numpy as np
import pytest

from fma.domain.auth import Role


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER)
    keep = stack.api("POST", "/v1/experiments", dev, json_body={"name": "keep"}).json()["experiment"]["id"]
    hide = stack.create_experiment(dev, {"w": np.zeros(2, np.float32)})
    return stack, dev, keep, hide


def ids(stack, token: str, **query: str) -> list[str]:
    res = stack.api("GET", "/v1/experiments", token, query=query or None)
    assert res.status == 200, res.body
    return [e["id"] for e in res.json()["experiments"]]


def test_archived_experiment_is_hidden_from_lists_until_asked_for(world):
    stack, dev, keep, hide = world
    analyst = stack.token(Role.ANALYST)
    res = stack.api("PATCH", f"/v1/experiments/{hide}", dev, json_body={"archived": True})
    assert res.status == 200 and res.json()["archived"] is True and res.json()["status"] == "RUNNING"
    for token in (dev, analyst):
        assert ids(stack, token) == [keep]
        assert ids(stack, token, archived="true") == [hide]
        assert ids(stack, token, archived="false") == [keep]
    # Still readable and still running: archiving only hides it.
    assert stack.experiment(dev, hide)["archived"] is True
    assert stack.experiment(analyst, hide)["status"] == "RUNNING"
    res = stack.api("PATCH", f"/v1/experiments/{hide}", dev, json_body={"archived": False})
    assert res.status == 200 and res.json()["archived"] is False
    assert sorted(ids(stack, dev)) == sorted([keep, hide]) and ids(stack, dev, archived="true") == []


def test_archive_and_status_change_in_one_patch(world):
    stack, dev, _, hide = world
    res = stack.api("PATCH", f"/v1/experiments/{hide}", dev, json_body={"archived": True, "status": "STOPPED"})
    assert res.status == 200 and (res.json()["archived"], res.json()["status"]) == (True, "STOPPED")
    assert stack.experiment(dev, hide)["archived"] is True


def test_only_the_owner_or_an_admin_archives(world):
    stack, dev, keep, _ = world
    others = {stack.token(Role.DEVELOPER): 404, stack.token(Role.ANALYST): 403}
    before = stack.snapshot()
    for token, status in others.items():
        assert stack.api("PATCH", f"/v1/experiments/{keep}", token, json_body={"archived": True}).status == status
    for body in ({"archived": "yes"}, {"archived": 1}, {}, {"archived": None}):
        res = stack.api("PATCH", f"/v1/experiments/{keep}", dev, json_body=body)
        assert res.status == 400, body
    assert stack.api("GET", "/v1/experiments", dev, query={"archived": "maybe"}).status == 400
    assert stack.snapshot() == before
    admin = stack.token(Role.ADMIN)
    assert stack.api("PATCH", f"/v1/experiments/{keep}", admin, json_body={"archived": True}).status == 200
    assert keep not in ids(stack, dev)


def test_archived_lists_page_with_their_own_cursors(world):
    stack, dev, keep, hide = world
    for exp_id in (keep, hide):
        stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"archived": True})
    first = stack.api("GET", "/v1/experiments", dev, query={"archived": "true", "limit": "1"}).json()
    assert len(first["experiments"]) == 1 and first["next_cursor"]
    rest = stack.api("GET", "/v1/experiments", dev, query={"archived": "true", "cursor": first["next_cursor"]})
    paged = [e["id"] for e in first["experiments"] + rest.json()["experiments"]]
    # Both were created within one second: the newest-first order then falls back to the id.
    assert sorted(paged) == sorted([hide, keep]) and paged == ids(stack, dev, archived="true")
    # A cursor of the archived list is no cursor of the live one.
    wrong = stack.api("GET", "/v1/experiments", dev, query={"cursor": first["next_cursor"]})
    assert wrong.status == 400 and wrong.json()["error"]["code"] == "INVALID_CURSOR"
