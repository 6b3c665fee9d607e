# make demo : create .venv, install, run the whole pipeline on the built-in sample
# make test : create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test bench clean

# The package with its declared dependencies, each pinned by requirements.txt (the constraints file).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -c requirements.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m coco2yolo.demo

test: install
	$(PY) -m pytest -q

clean:
	rm -rf runs data/sample
