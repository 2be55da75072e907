# Two entry points (README): `make demo` runs the main job, `make test` runs the test suite.
# Each creates .venv itself. TORCH pins the CPU build of torch; override for CUDA, e.g.
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# The demo trains on a 10 x 10 city (seq_len 100) so that CPU training takes minutes; the
# scenario counts, and so the plan's numbers, are the user's document's (240 x 4 train, 100 x 4 test).
DATA ?= data/city10
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
	test -d $(DATA) || $(BIN)/hrm-data build city-logistics --out $(DATA) --size 10
	$(BIN)/hrm-data validate $(DATA) --deep
	$(BIN)/hrm-data plan $(DATA) --global-batch-size 32 --epochs 100 --eval-interval 10
	$(BIN)/hrm-data show $(DATA) --index 0
	$(BIN)/hrm-train $(DATA) preset=cpu-small epochs=20 eval_interval=10 run_name=$(RUN)
	$(BIN)/hrm-train --eval-only --checkpoint runs/$(RUN) $(DATA)

test: venv
	$(BIN)/python -m pytest

bench: venv  # gpu_check.py needs a GPU: run it by hand there
	@for b in $(filter-out benchmarks/gpu_check.py,$(wildcard benchmarks/*.py)); do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) data/ runs/ .pytest_cache .hypothesis
