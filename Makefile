# make demo : create .venv, install, run the whole pipeline on the built-in sample
# make test : create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test browser clean

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

# Debian's headless Chromium and its driver, for the report's browser test (.ci/run does this too)
browser:
	apt-get install -y --no-install-recommends chromium chromium-driver || sudo apt-get install -y --no-install-recommends chromium chromium-driver

clean:
	rm -rf runs data/sample
