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
        ({"ingest_max_concurrency": 1}, "ingest_max_concurrency must be 2..1000"),
        ({"ingest_max_concurrency": "1001"}, "ingest_max_concurrency must be 2..1000"),
        ({"ingest_max_concurrency": "many"}, "setting ingest_max_concurrency must be an integer"),
    ],
)
def test_invalid_settings_fail_the_synth_with_their_name(values, message):
    with pytest.raises(ValueError, match=message):
        Config.from_mapping(values)


def test_ingest_max_concurrency_comes_from_the_stage_block_or_the_command_line_and_is_refused_out_of_range():
    import json

    from infra.config import ROOT

    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    for stage, expected in (("dev", 10), ("prod", 50)):
        assert Config.from_context(App(context={**context, "stage": stage}).node).ingest_max_concurrency == expected
    assert Config.from_context(App(context={**context, "ingest_max_concurrency": "2"}).node).ingest_max_concurrency == 2
    for bad in ("0", "1", "1001", "-5"):
        with pytest.raises(ValueError, match=r"invalid fma setting: ingest_max_concurrency must be 2\.\.1000"):
            Config.from_context(App(context={**context, "ingest_max_concurrency": bad}).node)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().stage = "x"  # type: ignore[misc]


def test_synth_fails_when_a_function_cannot_hold_its_streaming_working_set(tmp_path):
    from aws_cdk import App as CdkApp

    from infra.config import FEATURE_FLAGS

    # Given an aggregate function of 512 MB (the fanout reduce holds a few 64 MiB ranges)
    context = {**FEATURE_FLAGS, "max_update_bytes": str(512 * 1024 * 1024), "aggregate_memory_mb": "512"}
    with pytest.raises(ValueError) as err:
        Config.from_context(CdkApp(outdir=str(tmp_path), context=context).node)
    message = str(err.value)
    # Then synth stops naming the function, its memory, what it needs and what to change
    assert "aggregate function's memory" in message and "aggregate_memory_mb=512 MB" in message
    assert "needs at least 1024 MB" in message and "raise aggregate_memory_mb" in message
    assert "ingest" not in message and "sweeper" not in message


def test_streaming_functions_need_the_same_memory_whatever_the_update_size():
    from infra.config import RUNTIME_MB, STREAMING_MB, memory_misfits, required_memory_mb

    # ingest and the sweeper check updates over 16 MiB ranged reads (issue 13): 512 MB fits 2 GiB updates
    big = Config.from_mapping({"max_update_bytes": 2 << 30, "ingest_memory_mb": 512, "sweeper_memory_mb": 512,
                               "aggregate_memory_mb": 10240})
    assert required_memory_mb(big, "ingest") == required_memory_mb(big, "sweeper") == RUNTIME_MB + STREAMING_MB
    assert not [m for m in memory_misfits(big) if "ingest" in m or "sweeper" in m]
    with pytest.raises(ValueError, match=r"ingest function's memory.*128 MB of ranged reads"):
        Config.from_mapping({"max_update_bytes": 1 << 20, "ingest_memory_mb": 256})


def test_default_memory_takes_50_gib_updates_and_fans_out_models_the_single_plan_cannot_hold():
    from infra.config import memory_misfits, required_memory_mb, single_max_model_bytes

    config = Config()
    assert config.max_update_bytes == 512 * 1024 * 1024 and memory_misfits(config) == []
    assert required_memory_mb(config, "ingest") <= config.ingest_memory_mb
    assert required_memory_mb(config, "aggregate") <= config.aggregate_memory_mb
    # 50 GiB updates deploy with the default memory: every function streams, big models fan out
    huge = Config.from_mapping({"max_update_bytes": 50 * 1024**3})
    assert memory_misfits(huge) == []
    assert single_max_model_bytes(config) == (3008 - 256) * 1024 * 1024 // 4  # 688 MiB
    assert single_max_model_bytes(Config.from_mapping({"aggregate_memory_mb": 10240})) > 2 * 1024**3
    small = Config.from_mapping({"max_update_bytes": 64 * 1024 * 1024, "ingest_memory_mb": 512,
                                 "sweeper_memory_mb": 512})
    assert memory_misfits(small) == []


def test_throttling_defaults_are_sized_for_ten_thousand_polling_clients():
    config = Config()
    polls = config.expected_clients / config.poll_retry_after_seconds
    round_traffic = 3 * config.expected_clients / 60  # download, upload request, evaluation per round
    assert config.api_rate_limit >= polls + round_traffic
    assert config.api_burst_limit >= 2 * config.api_rate_limit
    assert config.api_quota_per_day >= config.api_rate_limit * 86_400
    custom = Config.from_context(App(context={"api_rate_limit": "50", "api_burst_limit": "80"}).node)
    assert (custom.api_rate_limit, custom.api_burst_limit) == (50, 80)
    with pytest.raises(ValueError, match="api_burst_limit"):
        Config.from_mapping({"api_rate_limit": 100, "api_burst_limit": 10})


def test_ingest_attempts_must_end_before_the_dead_letter_queue():
    with pytest.raises(ValueError, match="max_ingest_attempts"):
        Config.from_mapping({"max_ingest_attempts": 5, "ingest_max_receive_count": 5})
