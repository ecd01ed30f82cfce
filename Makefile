# The README's two commands: `make demo` (main job on generated data, CPU) and `make test`.
# Both create the environment in .venv first when it is missing or out of date.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.mmbcn-installed

.PHONY: setup test lint demo bench clean-env

setup: $(STAMP)

$(STAMP): tools/setup_env.sh tools/constraints.txt pyproject.toml
	bash tools/setup_env.sh
	touch $@

lint: setup
	$(PYTHON) -m ruff check mmbcn tools tests configs benchmarks setup.py

test: setup lint
	$(PYTHON) -m pytest tests

demo: setup
	$(PYTHON) tools/demo.py

bench: setup
	$(PYTHON) benchmarks/bench_bcn.py

clean-env:
	rm -rf $(VENV)
