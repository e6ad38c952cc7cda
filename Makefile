# Two commands: `make run` (set up + run the app on embedded defaults) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install --quiet -e ".[dev,cluster]"
	@touch $(STAMP)

setup: $(STAMP)

# A window when there is a display, otherwise a scripted headless run that writes its results.
run: $(STAMP)
	@bash .ci/system-packages.sh
	$(BIN)/yume run

# Two pytest workers (pytest-xdist), each test file whole on one of them: about half the suite
# waits on real time (LSL streams, paced sessions), so the 2-core machine runs it in ~60 % of the
# serial time. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	@bash .ci/system-packages.sh
	QT_QPA_PLATFORM=offscreen SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy \
		$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) build *.egg-info
