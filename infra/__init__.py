"""CDK infrastructure of FMA. Never imported by runtime code."""
