# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates .venv itself. TORCH pins the CPU build of torch; override for CUDA, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# The demo (README, "The demo"): 5 x 5 city maps whose start and end are at least 6 moves apart, where
# the naive fewest-cells route is wrong about half the time; 19200 training scenarios x 3 vehicles.
# The trainer's settings are in configs/demo-city.yaml; benchmarks/learn_city.py reproduces the curve.
DEMO_DATA ?= data/city-demo
DEMO_BUILD := --size 5 --min-distance 6 --vehicles car,van,truck --train-scenarios 19200 --test-scenarios 200
# `plan` is shown on the user's document's counts (240 x 4 train, 100 x 4 test, here on a 10 x 10 map):
# 75 steps per iteration, 750 in total.
PLAN_DATA ?= data/city10
RUN := demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: venv demo test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[train,test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	test -d $(DEMO_DATA) || $(BIN)/hrm-data build city-logistics --out $(DEMO_DATA) $(DEMO_BUILD)
	$(BIN)/hrm-data validate $(DEMO_DATA) --deep
	test -d $(PLAN_DATA) || $(BIN)/hrm-data build city-logistics --out $(PLAN_DATA) --size 10
	$(BIN)/hrm-data plan $(PLAN_DATA) --global-batch-size 32 --epochs 100 --eval-interval 10
	$(BIN)/hrm-data show $(DEMO_DATA) --split test --index 0
	$(BIN)/hrm-train $(DEMO_DATA) --config configs/demo-city.yaml run_name=$(RUN)

test: venv
	$(BIN)/python -m pytest

bench: venv  # gpu_check.py needs a GPU: run it by hand there
	@for b in $(filter-out benchmarks/gpu_check.py,$(wildcard benchmarks/*.py)); do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/ runs/ .pytest_cache .hypothesis
