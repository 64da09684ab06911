# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the package with its CPU, export, examples and test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,export,examples,test]"
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	$(PY) examples/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q
