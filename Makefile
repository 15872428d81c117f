# Thin wrappers around the koforge CLI for people who like make.
#   make analyze MODEL=./exaone-1.2b
#   make baseline MODEL=./exaone-1.2b TEXTS=heldout.txt        (baseline of the base model)
#   make eval MODEL=./small BASELINE=./exaone-1.2b/baseline_result.json   (PerfNorm, SpeedNorm, Score)
#   make compress EXP=11-23_drop_layers ARGS="-m compression.keep_layers=22,24,26,28 model=./exaone-1.2b measure.texts=heldout.txt"
#   make report
PYTHON ?= python
MODEL ?= LGAI-EXAONE/EXAONE-4.0-1.2B
TEXTS ?= heldout.txt
BASELINE ?= baseline_result.json
EXP ?= 11-23_fp16
ARGS ?=
OUTPUTS ?= outputs

.PHONY: setup analyze baseline eval compress report clean test

setup:
	$(PYTHON) -m pip install -e ".[dev]"

analyze:
	koforge compress analyze $(MODEL)

baseline:
	koforge compress baseline $(MODEL) --texts $(TEXTS)

eval:
	koforge compress eval $(MODEL) --baseline $(BASELINE)

compress:
	koforge compress run $(EXP) $(ARGS)

report:
	koforge compress report $(OUTPUTS)

test:
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(OUTPUTS)/.*.tmp-* $(OUTPUTS)/*/.*.tmp-* $(OUTPUTS)/*/*/.*.tmp-* build dist .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
