# Both targets create .venv on first use and install the package into it, so
# a machine needs only Python 3 and make.
PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

demo: $(STAMP)
	$(VENV_PYTHON) examples/digits_demo.py

test: $(STAMP)
	$(VENV_PYTHON) -m pytest

# Reinstall when the dependency list changes.
$(STAMP): setup.py
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip
	$(VENV_PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
