# Vesalius: `make demo` runs a server with sample studies; `make test` runs the whole suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo-data
DEMO_PASSWORD ?= vesalius-demo

.PHONY: setup demo test lint typecheck bench clean sysdeps viewer

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

sysdeps:
	@./scripts/sysdeps.sh

viewer:
	@./scripts/fetch-ohif.sh

demo: sysdeps setup viewer
	$(BIN)/vesalius import --data-dir $(DEMO_DIR) --samples
	@printf '%s\n' "$(DEMO_PASSWORD)" | $(BIN)/vesalius user add demo --role admin --password-stdin \
		--data-dir $(DEMO_DIR) >/dev/null 2>&1 || true
	@echo ""
	@echo "Vesalius demo: viewer    http://127.0.0.1:8080/   (sign in as demo / $(DEMO_PASSWORD))"
	@echo "               DICOMweb  http://127.0.0.1:8080/dicom-web/studies"
	@echo "               DICOM     VESALIUS@127.0.0.1:11112    health  http://127.0.0.1:8080/healthz"
	@echo "  try: curl -u demo:$(DEMO_PASSWORD) http://127.0.0.1:8080/dicom-web/studies"
	@echo "       echoscu -aec VESALIUS 127.0.0.1 11112"
	@echo "       findscu -S -aec VESALIUS -k QueryRetrieveLevel=STUDY -k PatientName='*' 127.0.0.1 11112"
	$(BIN)/vesalius serve --data-dir $(DEMO_DIR)

test: sysdeps setup viewer
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check vesalius tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR)
