# Cloud Patterns: `make lab` to learn, `make test` to check everything CI checks.
# Every target creates .venv on first use and reuses it after.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Tests never attach to an emulator someone is serving for JupyterLab.
TEST_ENV := CLOUDLAB_STATE_DIR=$(CURDIR)/.cloudlab-test MPLBACKEND=Agg

.PHONY: help install lab serve test test-fast test-localstack test-browser labs bench doctor pipeline student-release clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c 'import cloudlab, moto, jupyterlab, nbval'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with everything the course needs

lab: $(STAMP)  ## open JupyterLab on the course, with one shared emulator for all notebooks
	@$(PY) -m cloudlab backend serve & serve_pid=$$!; \
	trap 'kill $$serve_pid 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

serve: $(STAMP)  ## keep one emulator running (notebooks attach to it)
	$(PY) -m cloudlab backend serve

doctor: $(STAMP)  ## check Python, packages, backend, credentials
	$(PY) -m cloudlab doctor

pipeline: $(STAMP)  ## the capstone: deploy the moderation pipeline, push the image set through its API, print the summary
	$(PY) -m cloudlab pipeline run $(PIPELINE_ARGS)

labs: $(STAMP)  ## regenerate labs/ from the masters in solutions/
	$(PY) -m cloudlab labs build

# nbval runs every notebook and lab master in order against ONE served emulator, as `make lab`
# does, so notebooks that trip over each other's resources fail here. Unit tests isolate
# themselves, so they run at the same time, spread over TEST_WORKERS pytest-xdist workers (most of
# their time is spent waiting on timers and subprocesses); their report follows the notebooks'.
TEST_WORKERS ?= 2
# Run last, alone: the sandbox's hostile submissions, whose fork and memory bombs starve anything
# timed beside them. (The scheduler's, notebook 06's observe and the grader's tests used to run
# alone too; their failures under xdist were state leaking between test files and a socket path
# too long under xdist's temporary folders, fixed in tests/conftest.py and tests/test_grader.py.)
ALONE_TESTS := tests/test_sandbox.py
PYTEST := $(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider
test: $(STAMP)  ## everything CI checks: unit tests, grader checks, nbval over notebooks and solutions, labs up to date
	@rm -rf .cloudlab-test && mkdir -p .cloudlab-test
	[ ! -d solutions ] || $(PY) -m cloudlab labs check  # a student release has no masters
	@$(TEST_ENV) $(PY) -m cloudlab backend serve > .cloudlab-test/serve.log 2>&1 & serve_pid=$$!; \
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile --ignore=$(BROWSER_TESTS) $(addprefix --ignore=,$(ALONE_TESTS)) tests \
	    > .cloudlab-test/unit-tests.log 2>&1 & unit_pid=$$!; \
	trap 'kill $$serve_pid $$unit_pid 2>/dev/null' EXIT; \
	$(TEST_ENV) $(PY) -m cloudlab backend wait --timeout 120 --pid $$serve_pid > /dev/null \
	    || { echo "the emulator for the notebooks did not start; its log:" >&2; cat .cloudlab-test/serve.log >&2; exit 1; }; \
	echo "notebooks and lab masters (nbval), while the unit tests run:"; \
	$(PYTEST) --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=300 \
	    notebooks $(wildcard solutions); notebooks_status=$$?; \
	wait $$unit_pid; unit_status=$$?; \
	echo "unit tests (tests/, $(TEST_WORKERS) workers):"; cat .cloudlab-test/unit-tests.log; \
	echo "tests that run alone ($(ALONE_TESTS)):"; \
	$(PYTEST) $(ALONE_TESTS); alone_status=$$?; \
	[ $$notebooks_status = 0 ] && [ $$unit_status = 0 ] && [ $$alone_status = 0 ]

# The capstone's upload page in headless Chromium (Debian's chromium + chromium-driver, driven by
# Selenium from the venv). Installed here when missing and this is root (as in CI); otherwise the
# tests skip and say why. Screenshots stay in .cloudlab-test/artifacts/browser/.
BROWSER_TESTS := tests/test_browser_client.py
BROWSER_PACKAGES := chromium chromium-driver

test-browser: $(STAMP)  ## the upload page in headless Chromium: CORS as a browser enforces it, against the deployed pipeline (CI runs it after test)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	        echo "installing Debian's $(BROWSER_PACKAGES)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) > /dev/null; \
	    else \
	        echo "no chromium/chromedriver and not root: the browser tests will skip (sudo apt-get install $(BROWSER_PACKAGES))"; \
	    fi; \
	fi
	@# In CI a browser test that skips proves nothing: no Chromium there is a failure.
	@if [ -n "$$CI" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then \
	    echo "CI: Debian's $(BROWSER_PACKAGES) could not be installed; the browser tests cannot run" >&2; exit 1; \
	fi
	@mkdir -p .cloudlab-test
	$(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider -rs $(BROWSER_TESTS)
	@echo "screenshots: $(CURDIR)/.cloudlab-test/artifacts/browser/"; ls .cloudlab-test/artifacts/browser 2> /dev/null || true

# Real LocalStack 4.14 (host mode, no Docker) in its own venv, from pinned requirements; rebuilt
# only when .ci/localstack-requirements.txt is newer than the venv's stamp.
LS_STAMP := .venv-localstack/.installed-stamp
# Notebooks that pass nbval under LocalStack (docs/localstack-notebooks.md: which cells of the
# others differ, and why).
LS_NOTEBOOKS := notebooks/01_storage_models.ipynb notebooks/03_lambda_cold_starts.ipynb notebooks/04_sqs_semantics.ipynb

$(LS_STAMP): .ci/localstack-requirements.txt
	.ci/localstack.sh install

test-localstack: $(STAMP)  ## conformance suite + LocalStack-marked tests against real LocalStack 4.14 (CI runs it after test)
	@start=$$(date +%s); status=0; \
	{ $(MAKE) --no-print-directory $(LS_STAMP) && \
	.ci/localstack.sh run sh -c '\
	    $(TEST_ENV) $(PY) -m cloudlab conformance --check && \
	    $(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider -m localstack tests \
	    $(if $(LS_NOTEBOOKS),&& $(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider --nbval \
	        --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=300 $(LS_NOTEBOOKS))'; \
	} || status=$$?; \
	echo "make test-localstack took $$(( $$(date +%s) - start )) s"; exit $$status

test-fast: $(STAMP)  ## unit tests only
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile --ignore=$(BROWSER_TESTS) tests

bench: $(STAMP)  ## print the performance figures
	$(PY) bench/backend_rate.py
	$(PY) bench/lambda_overhead.py
	cd bench && ../$(PY) dynamodb_races.py --races 1000 --racers 4
	$(PY) bench/backoff_simulator.py
	$(PY) bench/grading_scale.py --submissions 40
	$(PY) bench/moderation.py
	$(PY) bench/sandbox_overhead.py
	$(PY) bench/pipeline_deploy.py
	$(PY) bench/pipeline_rate.py

student-release: $(STAMP)  ## write build/student/: the course as students get it (checked: no solutions, no hidden tests)
	$(PY) -m cloudlab release --out build/student

clean:  ## remove generated files (keeps .venv and .venv-localstack)
	rm -rf .cloudlab-test .cloudlab-localstack grades build .pytest_cache
