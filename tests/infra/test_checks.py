"""cdk-nag AwsSolutions and cfn-lint on the synthesized templates."""

from __future__ import annotations

import json
import re

import pytest

ACK_KEY = "aws:cdk:acknowledged-rules"
IGNORED_LINT_RULES = ["W3005"]  # CDK's explicit DependsOn next to a GetAtt: harmless.


def acknowledgements(synth) -> dict[str, set[str]]:
    """``{acknowledged finding id: {reason, ...}}`` across both stacks."""
    found: dict[str, set[str]] = {}
    for stack in ("fma-dev", "fma-prod"):
        metadata = json.loads((synth.outdir / f"{stack}.metadata.json").read_text())
        for entries in metadata.values():
            for entry in entries:
                if entry["type"] == ACK_KEY:
                    for rule, reason in entry["data"].items():
                        found.setdefault(rule, set()).add(reason)
    return found


def test_synth_passed_cdk_nag_with_every_finding_acknowledged(synth):
    # The session fixture's app.synth() raises on any finding without an acknowledgement;
    # the report keeps no AwsSolutions violation.
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["violations"] == [], plugin["pluginName"]


def test_every_acknowledgement_names_one_finding_and_gives_a_reason(synth):
    acks = {k: v for k, v in acknowledgements(synth).items() if k.startswith("AwsSolutions::")}
    assert acks
    for rule, reasons in acks.items():
        assert re.fullmatch(r"AwsSolutions::AwsSolutions-[A-Z]+\d+(\[.+\])?", rule), rule
        if "-IAM4" in rule or "-IAM5" in rule:
            assert "[" in rule, f"{rule} must name the finding (policy, action or resource)"
        for reason in reasons:
            assert len(reason) > 30, rule


def test_no_data_store_wildcard_is_acknowledged_beyond_a_key_prefix(synth):
    for rule in acknowledgements(synth):
        if "IAM5[Resource::" in rule and ("Models" in rule or "Table" in rule):
            assert re.search(r"/(models|updates|state|partials|pointers)/\*\]$", rule), rule


def test_an_unacknowledged_finding_fails_the_synth(tmp_path):
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_sqs as sqs
    from cdk_nag import AwsSolutionsChecks

    app = App(outdir=str(tmp_path))
    sqs.Queue(Stack(app, "Bad"), "Plain")  # no DLQ, no TLS enforcement
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS3"):
        app.synth()


@pytest.mark.parametrize("stack", ["fma-dev", "fma-prod"])
def test_cfn_lint_passes(synth, stack):
    from cfnlint.api import ManualArgs, lint

    template = (synth.outdir / f"{stack}.template.json").read_text()
    matches = lint(template, config=ManualArgs(ignore_checks=IGNORED_LINT_RULES, regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []
