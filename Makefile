# The README's two commands: `make demo` (bring the whole stack up and push one image through
# it) and `make test` (the whole test suite; .ci/run calls exactly this). Both set up what they
# need first (scripts/bootstrap.sh is idempotent).
.PHONY: demo test bootstrap lint clean-test

# The suite waits on containers far more than it computes, so its files run on parallel
# pytest-xdist workers, one file per worker at a time, costliest first (tests/test-times.tsv).
# `make test PYTEST_PARALLEL=` runs it in one process.
PYTEST_PARALLEL ?= -n 3 --dist loadfile --no-loadscope-reorder

bootstrap:
	bash scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/isletops demo

test: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy ops monitors
	.venv/bin/bandit -q -ll -r ops monitors services -x '*/tests/*'
	bash scripts/audit.sh
	.venv/bin/pytest -p no:cacheprovider --durations=25 $(PYTEST_PARALLEL) tests services

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy ops monitors
	.venv/bin/bandit -q -r ops monitors services -x '*/tests/*'
	bash scripts/audit.sh

# Remove containers/networks/volumes left by a crashed test run (they carry this label).
clean-test:
	docker ps -aq --filter label=org.isletnet.test | xargs -r docker rm -f
	docker network ls -q --filter label=org.isletnet.test | xargs -r docker network rm
	docker volume ls -q --filter label=org.isletnet.test | xargs -r docker volume rm
