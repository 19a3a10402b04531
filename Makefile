# Both targets create .venv on first use and install the package into it, so
# a machine needs only Python 3 and make.
PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean

demo: $(STAMP)
	$(VENV_PYTHON) examples/digits_demo.py

# Two workers, one per core here. Each worker takes whole modules (or test
# classes), so module fixtures are built once, in the order conftest.py sets.
# The heaviest exports peak near 11 GB of memory, which limits the count.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV_PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Reinstall when the dependency list changes.
$(STAMP): setup.py
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip
	$(VENV_PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
