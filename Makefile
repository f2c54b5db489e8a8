# The two commands of the README: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS := build/models
# make serve RUNTIME=onnxserver SAMPLE=onnx/iris-pipeline serves another sample
RUNTIME ?= sklearnserver
SAMPLE ?= sklearn/iris
HTTP_PORT ?= 8080
GRPC_PORT ?= 8081

.PHONY: install serve test lint protos sample-models bench images clean

RUNTIMES := sklearnserver xgbserver lgbserver pmmlserver paddleserver onnxserver tfserver

$(STAMP): pyproject.toml shared/core/pyproject.toml constraints.txt \
		$(foreach r,$(RUNTIMES),runtimes/$(r)/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e 'shared/core[tracing]' -e runtimes/sklearnserver -e runtimes/xgbserver \
		-e runtimes/lgbserver -e runtimes/pmmlserver -e runtimes/paddleserver \
		-e 'runtimes/onnxserver[cpu]' -e runtimes/tfserver -e '.[dev]'
	touch $(STAMP)

## install: create .venv with the core, the runtimes and the dev tools (pinned)
install: $(STAMP)

## sample-models: build every sample model from data the frameworks ship
sample-models: install
	$(BIN)/python examples/sample_models.py $(MODELS) --framework all

## serve: install, build the sample, serve it on 8080 (HTTP) and 8081 (gRPC)
serve: install
	$(BIN)/python examples/sample_models.py $(MODELS) --framework $(firstword $(subst /, ,$(SAMPLE)))
	exec $(BIN)/python -m $(RUNTIME) --model_name $(notdir $(SAMPLE)) \
		--model_dir $(MODELS)/$(SAMPLE) --http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT)

## test: install and run the whole test suite
test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

## lint: ruff (check and format), mypy (--strict on the core), hadolint over the Dockerfile
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --force-exclude $$(git ls-files '*.py')
	$(BIN)/mypy --strict -p modelserver
	$(BIN)/mypy runtimes/*/src examples/custom_model
	$(BIN)/hadolint docker/Dockerfile

## images: build the runtime images (docker, else podman); IMAGES="sklearnserver onnxserver-gpu"
images:
	$(PYTHON) scripts/build_images.py $(IMAGES)

## protos: regenerate the gRPC descriptor from the .proto
protos: install
	$(BIN)/python scripts/gen_protos.py

## bench: compare with KServe, MLServer and a bare route (bench/README.md); BENCH_ARGS="--quick"
bench:
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .hypothesis
