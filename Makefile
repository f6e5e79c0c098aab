# The two commands a newcomer needs: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dupwatch-installed

.PHONY: venv demo test test-fast lint clean retrain-real

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "dupwatch needs Python 3.11 or 3.12, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/dupwatch demo

test: venv
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) var .cache .pytest_cache

# Copy head + calibration on the real-footage corpus (issue #17). The candidate goes to $(REAL)/bundle;
# models/default is replaced only when the check set meets every target, or when the candidate is no
# worse than $(BASE) on any headline number of the same check set and better on one (`dupwatch train promote --baseline`).
# Both are calibrated on the same calibrate sets first ($(BASE)'s copy in $(REAL)/base), so that the rule compares copy heads.
# The calibrate split is drawn twice (seeds 100 and 101: $(CAL_BENCHES)); the thresholds are fitted on both together.
REAL ?= var/train/real
BASE ?= models/default
CAL_BENCHES := calibrate calibrate_seed101
CAL_FIT = $(foreach b,$(CAL_BENCHES),--truth $(REAL)/$(b)/truth.csv --scores $(REAL)/eval_$(b)$(1)/scores_ours_$(2).csv) \
	$(foreach b,$(CAL_BENCHES),--groups $(REAL)/$(b))
retrain-real: venv
	$(BIN)/dupwatch train corpus fetch
	$(BIN)/dupwatch train real-benchmarks --work $(REAL) --train-seeds 1,2,3 --calibrate-seeds 100,101
	rm -rf $(REAL)/bundle && cp -r $(BASE) $(REAL)/bundle
	$(BIN)/dupwatch train copy-head --bundle $(REAL)/bundle --bench $(REAL)/train_seed1 --bench $(REAL)/train_seed2 \
		--bench $(REAL)/train_seed3 --folds source --model trees
	for b in $(CAL_BENCHES); do \
		$(BIN)/dupwatch eval --bench $(REAL)/$$b --bundle $(REAL)/bundle --methods ours --report $(REAL)/eval_$$b || exit 1; done
	$(BIN)/dupwatch eval --bench $(REAL)/check --bundle $(REAL)/bundle --methods ours --report $(REAL)/eval_check_uncalibrated
	$(BIN)/dupwatch calibrate $(call CAL_FIT,,bundle) \
		--holdout $(REAL)/eval_check_uncalibrated/scores_ours_bundle.csv --holdout-truth $(REAL)/check/truth.csv \
		--confidence 0.9 --plot $(REAL)/calibration.png --bundle $(REAL)/bundle
	$(BIN)/dupwatch eval --bench $(REAL)/check --bundle $(REAL)/bundle --methods vpdq,vpdq_tiebreak,chamfer,ours --report $(REAL)/eval_check
	rm -rf $(REAL)/base && cp -r $(BASE) $(REAL)/base
	for b in $(CAL_BENCHES); do \
		$(BIN)/dupwatch eval --bench $(REAL)/$$b --bundle $(REAL)/base --methods ours --report $(REAL)/eval_$${b}_base || exit 1; done
	$(BIN)/dupwatch calibrate $(call CAL_FIT,_base,base) \
		--confidence 0.9 --plot $(REAL)/calibration_base.png --bundle $(REAL)/base
	$(BIN)/dupwatch eval --bench $(REAL)/check --bundle $(REAL)/base --methods ours --report $(REAL)/eval_check_base
	$(BIN)/dupwatch train promote --candidate $(REAL)/bundle --check $(REAL)/eval_check/metrics.json \
		--baseline $(REAL)/eval_check_base/metrics.json --out models/default
