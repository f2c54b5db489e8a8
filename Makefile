# The commands of the README: `make serve`, `make test`, `make test-fast`; `make` lists them all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt
MODELS := build/models
# make serve RUNTIME=onnxserver SAMPLE=onnx/iris-pipeline serves another sample
RUNTIME ?= sklearnserver
SAMPLE ?= sklearn/iris
HTTP_PORT ?= 8080
GRPC_PORT ?= 8081

.DEFAULT_GOAL := help
.PHONY: help install serve test test-fast lint protos sample-models bench images clean FORCE

RUNTIMES := sklearnserver xgbserver lgbserver pmmlserver paddleserver onnxserver mlflowserver torchserver \
	tfserver huggingfaceserver
PYPROJECTS := pyproject.toml shared/core/pyproject.toml constraints.txt \
	$(foreach r,$(RUNTIMES),runtimes/$(r)/pyproject.toml)
comma := ,
# What pip installs for a runtime: onnxserver with its CPU onnxruntime, mlflowserver
# with the flavors' frameworks.
runtime_spec = runtimes/$(1)$(if $(filter onnxserver,$(1)),[cpu])$(if $(filter mlflowserver,$(1)),[flavors])
# What examples/sample_models.py needs for SAMPLE: extras of ./pyproject.toml.
FRAMEWORK := $(firstword $(subst /, ,$(SAMPLE)))
SAMPLE_EXTRAS := samples-$(FRAMEWORK)$(if $(filter onnx/iris-mlp,$(SAMPLE)),$(comma)samples-torch)

# Stamps in .venv say what is installed there. Each install adds to the venv
# (pip upgrades in place), so `make install` after a light `make serve` keeps it.
FULL := $(VENV)/.installed
LIGHT := $(VENV)/.serve-$(RUNTIME)-$(subst $(comma),-,$(SAMPLE_EXTRAS))
# Everything installed already serves every sample; otherwise the light install.
SERVE_VENV := $(if $(wildcard $(FULL)),$(FULL),$(LIGHT))

ifneq ($(filter serve,$(MAKECMDGOALS)),)
ifeq ($(filter $(RUNTIME),$(RUNTIMES)),)
$(error RUNTIME=$(RUNTIME) is not a runtime; choose one of: $(RUNTIMES))
endif
endif

## help: list the targets (what a plain `make` does)
help:
	@echo 'usage: make TARGET [RUNTIME=... SAMPLE=... PYTEST_ARGS=...]'
	@echo
	@sed -n 's/^## \([a-z-]*\): \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | \
		awk -F '\t' '{ printf "  %-14s %s\n", $$1, $$2 }'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(FULL): $(PYPROJECTS) | $(BIN)/python
	$(PIP) -e 'shared/core[tracing]' $(foreach r,$(RUNTIMES),-e '$(call runtime_spec,$(r))') \
		-e '.[dev]'
	touch $@

# The sample's extras as plain requirements (the workspace itself need not be built), and
# no byte-compiling of every installed module: Python compiles what the server imports.
$(LIGHT): $(PYPROJECTS) scripts/extra_requirements.py | $(BIN)/python
	$(BIN)/python scripts/extra_requirements.py $(SAMPLE_EXTRAS) > $(VENV)/sample-requirements.txt
	$(PIP) --no-compile -e shared/core -e '$(call runtime_spec,$(RUNTIME))' \
		-r $(VENV)/sample-requirements.txt
	touch $@

## install: .venv with the core, every runtime, every sample generator and the dev tools (pinned)
install: $(FULL)

## sample-models: build every sample model under build/models from data the frameworks ship
sample-models: $(FULL)
	$(BIN)/python examples/sample_models.py $(MODELS) --framework all

# A sample is built once; again when its generators change or its folder is gone.
$(MODELS)/.made/%: examples/sample_models.py examples/samples/*.py \
		examples/custom_model/train_iris.py $(if $(wildcard $(MODELS)/$(SAMPLE)),,FORCE) \
		| $(SERVE_VENV)
	$(BIN)/python examples/sample_models.py $(MODELS) --sample $*
	mkdir -p $(@D) && touch $@

## serve: install the core and RUNTIME only, build SAMPLE, serve it on 8080 (HTTP) and 8081 (gRPC)
serve: $(SERVE_VENV) $(MODELS)/.made/$(SAMPLE)
	exec $(BIN)/python -m $(RUNTIME) --model_name $(notdir $(SAMPLE)) \
		--model_dir $(MODELS)/$(SAMPLE) --http_port $(HTTP_PORT) --grpc_port $(GRPC_PORT)

## test: install everything and run the whole suite, container images included (root, podman)
test: $(FULL)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

## test-fast: the whole suite except tests/images (no root, no podman, no image builds)
test-fast: $(FULL)
	$(BIN)/python -m pytest -n 2 --ignore=tests/images $(PYTEST_ARGS)

## lint: ruff (check and format), mypy (--strict on the core), hadolint over the Dockerfile
lint: $(FULL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --force-exclude $$(git ls-files '*.py')
	$(BIN)/mypy --strict -p modelserver
	$(BIN)/mypy runtimes/*/src examples/custom_model
	$(BIN)/hadolint docker/Dockerfile

## images: build the runtime images (docker, else podman); IMAGES="sklearnserver onnxserver-gpu"
images:
	$(PYTHON) scripts/build_images.py $(IMAGES)

## protos: regenerate the gRPC descriptor from the .proto
protos: $(FULL)
	$(BIN)/python scripts/gen_protos.py

## bench: compare with KServe, MLServer and a bare route (bench/README.md); BENCH_ARGS="--quick"
bench:
	$(PYTHON) bench/run.py $(BENCH_ARGS)

FORCE:

## clean: remove .venv, build/ (sample models, image-test storage) and the caches
clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .hypothesis
