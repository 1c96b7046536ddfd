"""S3 Object Lock on the model bucket, from config (issue 16): off by default, on with retention."""

from __future__ import annotations

import pytest
from conftest import resources

from infra.config import Config


def _models_bucket(template: dict) -> dict:
    return next(v for k, v in resources(template, "AWS::S3::Bucket").items() if k.startswith("StorageModels"))


def test_object_lock_is_off_unless_configured(synth):
    for template in (synth.dev, synth.prod):
        props = _models_bucket(template)["Properties"]
        assert "ObjectLockEnabled" not in props and "ObjectLockConfiguration" not in props


@pytest.mark.parametrize("mode", ["governance", "compliance"])
def test_object_lock_default_retention_comes_from_config(mode):
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from infra.constructs.storage import Storage

    app = App()
    stack = Stack(app, "lock")
    Storage(stack, "Storage", config=Config.from_mapping(
        {"stage": "prod", "retain": True, "object_lock": mode, "object_lock_days": 400}))
    Template.from_stack(stack).has_resource_properties("AWS::S3::Bucket", {
        "ObjectLockEnabled": True,
        "VersioningConfiguration": {"Status": "Enabled"},
        "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {
            "Mode": mode.upper(), "Days": 400}}},
    })


@pytest.mark.parametrize(("values", "message"), [
    ({"object_lock": "legal-hold", "retain": True}, "object_lock must be governance or compliance"),
    ({"object_lock": "governance", "retain": True, "object_lock_days": 0}, "object_lock_days must be 1..36500"),
    ({"object_lock": "compliance", "retain": False}, "object_lock needs retain=true"),
])
def test_invalid_object_lock_settings_fail_the_synth(values, message):
    with pytest.raises(ValueError, match=message):
        Config.from_mapping({"stage": "prod", **values})
