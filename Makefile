# plantwatch: the two commands a new machine needs are `make demo` and `make test`.
.PHONY: demo test bench venv services-up services-down lint clean

demo:            ## install, start Kafka + InfluxDB, train a model if none, stream a simulated fleet through the whole pipeline, summary
	scripts/demo.sh

test:            ## install, start private services, lint + types + every test, stop services
	scripts/test.sh

bench:           ## benchmarks against private real services; writes bench/results/
	scripts/bench.sh

venv:            ## create .venv and install plantwatch[dev]
	scripts/bootstrap.sh

services-up: venv
	.venv/bin/plantwatch services up

services-down:
	.venv/bin/plantwatch services down

lint: venv       ## format check, lint, type check and import layers only
	.venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/mypy && .venv/bin/lint-imports

clean:           ## remove .venv and local state (not the per-user build caches)
	rm -rf .venv .state
