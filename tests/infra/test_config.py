"""The settings object read from cdk context."""

from __future__ import annotations

import pytest
from aws_cdk import App

from infra.config import Config


def test_stage_block_then_command_line_keys_override_defaults():
    app = App(
        context={
            "stage": "prod",
            "stages": {"prod": {"retain": True, "aggregate_memory_mb": 4096}},
            "aggregate_memory_mb": "6144",
            "alarm_email": "ops@example.com",
            "waf": "false",
        }
    )
    config = Config.from_context(app.node)
    assert config.stage == "prod" and config.retain is True
    assert config.aggregate_memory_mb == 6144
    assert config.alarm_email == "ops@example.com"
    assert config.waf is False
    assert config.lease_seconds == config.aggregate_timeout_s + 60


def test_prod_retains_by_default_and_dev_does_not():
    assert Config.from_context(App(context={"stage": "prod"}).node).retain is True
    assert Config.from_context(App().node).retain is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"api_timeout_s": 60}, "api_timeout_s"),
        ({"aggregate_memory_mb": 64}, "aggregate_memory_mb"),
        ({"direct_upload_max_bytes": 5 * 1024 * 1024}, "direct_upload_max_bytes"),
        ({"stage": "Prod!"}, "stage"),
        ({"memory": 1}, "unknown fma settings"),
    ],
)
def test_invalid_settings_fail_the_synth_with_their_name(values, message):
    with pytest.raises(ValueError, match=message):
        Config.from_mapping(values)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().stage = "x"  # type: ignore[misc]
