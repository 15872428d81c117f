# Thin wrappers around the koforge CLI for people who like make.
#   make analyze MODEL=./exaone-1.2b
#   make eval MODEL=./exaone-1.2b TEXTS=heldout.txt            (baseline of the base model)
#   make compress EXP=11-23_drop_layers ARGS="-m compression.keep_layers=22,24,26,28 model=./exaone-1.2b measure.texts=heldout.txt"
#   make report
PYTHON ?= python
MODEL ?= LGAI-EXAONE/EXAONE-4.0-1.2B
TEXTS ?= heldout.txt
EXP ?= 11-23_fp16
ARGS ?=
OUTPUTS ?= outputs

.PHONY: setup analyze eval compress report clean test

setup:
	$(PYTHON) -m pip install -e ".[dev]"

analyze:
	koforge compress analyze $(MODEL)

eval:
	koforge compress baseline $(MODEL) --texts $(TEXTS)

compress:
	koforge compress run $(EXP) $(ARGS)

report:
	koforge compress report $(OUTPUTS)

test:
	$(PYTHON) -m pytest -q

clean:
	rm -rf $(OUTPUTS)/*/.*.tmp-* build dist .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
