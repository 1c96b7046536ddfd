# One entry point for humans and CI. `.venv` is reused while the pinned requirements are unchanged.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := local,dev,infra,dp,flower,mlflow
# torch (pinned 2.13.0, a CPU build on the machines' disk) so the PyTorch examples and helpers run in CI;
# bf16 (ml_dtypes) for bfloat16 models.
CLIENT_EXTRAS := torch,bf16
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test lint demo bench bench-aggregation bench-io bench-load bench-async bench-scale synth layer clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]' -e 'clients/python[$(CLIENT_EXTRAS)]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/fma demo $(ARGS)

# Aggregation (FMA vs Flower vs np.add) then the load run; ARGS="--quick" for short versions of both.
bench: bench-aggregation bench-io bench-load bench-async bench-scale

bench-aggregation: $(STAMP)
	$(BIN)/python benchmarks/aggregation.py $(ARGS)

# Single vs fanout plans over modelled S3 reads (issue 14, docs/scale.md); ARGS="--quick" for 400 kB updates.
bench-io: $(STAMP)
	$(BIN)/python benchmarks/aggregation_io.py $(ARGS)

# 200 clients on 20 threads, 3 rounds of a 1M-parameter model against local mode (loopback, hard
# deadline); ARGS="--quick" for 20 clients x 100k parameters.
bench-load: $(STAMP)
	$(BIN)/python benchmarks/load.py $(ARGS)

# Sync quota 6 vs quota 4 vs async FedBuff K=3 on digits, 2 of 6 clients 5x slower (docs/async.md);
# ARGS="--quick" for shorter simulated training.
bench-async: $(STAMP)
	$(BIN)/python benchmarks/async_rounds.py $(ARGS)

# Scale model (issue 13/18, docs/scale.md): 1k/10k/100k clients over 60 s/5 min/30 min, the design
# before issue 13 and after, from the recorded profiles; ARGS="--raised" with raised quotas,
# ARGS="--quick" for the 1k and 10k rows, ARGS="--what-if pointer-polls+experiment-cache" for
# design changes that are not built.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(ARGS)

# The Lambda layer: fma + pinned runtime wheels for linux/arm64 cp312 (pip download is cached).
layer: $(STAMP)
	$(BIN)/python layers/build.py

# Stage the function assets and the layer, then synthesize offline (cdk-nag runs on synth).
synth: layer
	$(BIN)/python -m infra.assets --no-layer
	rm -rf cdk.out
	$(BIN)/python app.py
	@echo "cdk.out/ written: deploy with 'npx cdk deploy --app cdk.out' (see docs/deploy.md)"

clean:
	rm -rf $(VENV) cdk.out layers/build .pytest_cache .ruff_cache
