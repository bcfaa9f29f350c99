# Two commands do all set-up on a fresh machine: `make test` and `make dev` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test dev lint bench drills clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

TEST_WORKERS ?= 2
# The browser the UI tests drive (flip_pipelines_tests/ui/): Debian's package, since Playwright's own browser
# downloads cannot work here. A file target: installed only when missing, as root, without questions.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@test "$$(id -u)" = 0 || { echo "$(CHROMIUM) is missing: run 'apt-get install chromium' as root" >&2; exit 1; }
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

## test: create .venv, install with dev extras (and chromium when missing), run the whole suite (real PostgreSQL,
## SQLite, S3, FL servers, the Dagster UI in chromium) on TEST_WORKERS pytest-xdist workers (each with its own
## session servers; 1 runs it in one process)
test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## dev: create .venv, install, migrate the embedded SQLite database, start the Dagster UI
dev: $(STAMP)
	$(BIN)/flip-pipelines dev $(DEV_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check flip_pipelines flip_pipelines_tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_claim.py

## drills: SIGKILL a training's run worker at every boundary (and the daemon mid-run) on a real local hub; print the table
drills: $(STAMP)
	$(BIN)/python benchmarks/drills.py $(DRILL_ARGS)

clean:
	rm -rf $(VENV) .flip .pytest_cache
