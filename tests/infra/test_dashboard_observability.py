"""The dashboard site, CloudWatch dashboard, alarms and the stack outputs."""

from __future__ import annotations

import json

from conftest import ALARM_EMAIL, functions_by_handler, resources


def test_site_is_served_by_cloudfront_over_https_with_oac(synth):
    dist = next(iter(resources(synth.dev, "AWS::CloudFront::Distribution").values()))
    config = dist["Properties"]["DistributionConfig"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert "ResponseHeadersPolicyId" in behavior
    assert config["DefaultRootObject"] == "index.html"
    origin = config["Origins"][0]
    assert "OriginAccessControlId" in origin
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert "Logging" in config


def test_pointer_objects_are_served_from_the_models_bucket_cached_5_s_and_only_them(synth):
    """Issue 13 item 5: `/pointers/*` reaches the models bucket through its own OAC, cached at
    most 5 s, and the bucket lets CloudFront read `pointers/*` only (never models or updates)."""
    dist_id, dist = next(iter(resources(synth.dev, "AWS::CloudFront::Distribution").items()))
    config = dist["Properties"]["DistributionConfig"]
    [behavior] = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/pointers/*"]
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    origin = next(o for o in config["Origins"] if o["Id"] == behavior["TargetOriginId"])
    assert "Models" in json.dumps(origin["DomainName"]) and "OriginAccessControlId" in origin
    cache_ref = behavior["CachePolicyId"]["Ref"]
    ttl = resources(synth.dev, "AWS::CloudFront::CachePolicy")[cache_ref]["Properties"]["CachePolicyConfig"]
    assert (ttl["DefaultTTL"], ttl["MaxTTL"], ttl["MinTTL"]) == (5, 5, 0)
    statements = [st for pol in resources(synth.dev, "AWS::S3::BucketPolicy").values()
                  for st in pol["Properties"]["PolicyDocument"]["Statement"]
                  if st.get("Principal", {}).get("Service") == "cloudfront.amazonaws.com"
                  and "Models" in json.dumps(pol["Properties"]["Bucket"])]
    assert len(statements) == 1 and statements[0]["Action"] == "s3:GetObject"
    assert json.dumps(statements[0]["Resource"]).endswith('/pointers/*"]]}')
    assert dist_id in json.dumps(statements[0]["Condition"])
    env = functions_by_handler(synth.dev)["api"]["Properties"]["Environment"]["Variables"]
    assert dist_id in json.dumps(env["FMA_POINTER_BASE_URL"])


def test_security_headers_policy_sets_csp_hsts_and_frame_denial(synth):
    policy = next(iter(resources(synth.dev, "AWS::CloudFront::ResponseHeadersPolicy").values()))
    headers = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] == 365 * 24 * 3600
    assert headers["ContentTypeOptions"]["Override"] is True
    csp = json.dumps(headers["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert "default-src 'self'" in csp and "execute-api" in csp


def test_site_deployment_ships_web_and_a_generated_config(synth):
    deployment = next(iter(resources(synth.dev, "Custom::CDKBucketDeployment").values()))
    props = deployment["Properties"]
    assert len(props["SourceBucketNames"]) == 2  # web/ and config.json
    markers = json.dumps(props.get("SourceMarkers"))
    assert "RestApi" in markers  # {"apiUrl": "<api url>v1"} resolved at deploy time
    assert props["DistributionPaths"] == ["/*"]
    site = _asset_dir(synth, synth.web_dir)
    assert sorted(p.name for p in site.iterdir()) == ["app.js", "index.html"]


def test_alarms_cover_errors_throttles_dlqs_5xx_and_slow_aggregation(synth):
    alarms = resources(synth.dev, "AWS::CloudWatch::Alarm")
    metrics = [(a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms.values()]
    assert metrics.count(("AWS/Lambda", "Errors")) == 6
    assert metrics.count(("AWS/Lambda", "Throttles")) == 6
    assert metrics.count(("AWS/SQS", "ApproximateNumberOfMessagesVisible")) == 2
    assert ("AWS/ApiGateway", "5XXError") in metrics
    assert ("FMA", "RoundsFailed") in metrics  # the sweeper failed a round (deadline or retries)
    assert ("FMA", "UpdatesFailed") in metrics  # ingest or the sweeper gave up on an update (a fault)
    assert ("FMA", "SweepErrors") in metrics
    slow = [a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "Duration"]
    assert slow[0]["Threshold"] == 0.8 * 900 * 1000
    topic = next(iter(resources(synth.dev, "AWS::SNS::Topic")))
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]


def test_alarm_email_is_subscribed_only_when_configured(synth):
    assert not resources(synth.dev, "AWS::SNS::Subscription")
    sub = next(iter(resources(synth.prod, "AWS::SNS::Subscription").values()))["Properties"]
    assert (sub["Protocol"], sub["Endpoint"]) == ("email", ALARM_EMAIL)


def test_cloudwatch_dashboard_shows_the_service_metrics(synth):
    dashboard = next(iter(resources(synth.dev, "AWS::CloudWatch::Dashboard").values()))
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "UpdatesAccepted",
        "UpdatesRejected",
        "RoundsPublished",
        "RoundSeconds",
        "AggregationSeconds",
        "ModelBytes",
        "Latency",
        "5XXError",
        "Throttles",
        "ApproximateNumberOfMessagesVisible",
        "maxMemoryUsed",
    ):
        assert metric in body, metric
    assert '\\"FMA\\"' in body


def test_stable_outputs(synth):
    for template in (synth.dev, synth.prod):
        assert {"ApiUrl", "DashboardUrl", "BucketName", "TableName"} <= set(template["Outputs"])
    api_url = json.dumps(synth.dev["Outputs"]["ApiUrl"]["Value"])
    assert api_url.endswith('"/v1"]]}')


def test_functions_are_tagged_with_the_stage(synth):
    for fn in functions_by_handler(synth.prod).values():
        assert {"Key": "stage", "Value": "prod"} in fn["Properties"]["Tags"]


def _asset_dir(synth, source):
    """The cdk.out copy of the directory asset staged from ``source``."""
    manifest = json.loads((synth.outdir / "fma-dev.assets.json").read_text())
    for asset in manifest["files"].values():
        path = synth.outdir / asset["source"]["path"]
        if path.is_dir() and (path / "index.html").exists():
            return path
    raise AssertionError(f"no staged copy of {source}")
