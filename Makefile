.PHONY: setup demo test

setup:
	bash scripts/bootstrap.sh

demo: setup
	.venv/bin/coseg demo --output demo_out

test: setup
	.venv/bin/python -m pytest -q tests
