# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates .venv itself. TORCH pins the CPU build of torch; override for CUDA, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data/city
RUN ?= demo
TRAIN_MINUTES ?= 3

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
	$(BIN)/hrm-data build city-logistics --out $(DATA) --force
	$(BIN)/hrm-data validate $(DATA) --deep
	$(BIN)/hrm-data plan $(DATA) --global-batch-size 32 --epochs 100 --eval-interval 10
	$(BIN)/hrm-train $(DATA) preset=cpu-small run_name=$(RUN) force_run=true max_minutes=$(TRAIN_MINUTES)
	$(BIN)/hrm-train eval runs/$(RUN)

test: venv
	$(BIN)/python -m pytest

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/ runs/ .pytest_cache .hypothesis
