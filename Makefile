# The kit's entry points. README.md's two commands are `make run` and `make test`; both set up the
# environment first (once: a second run reuses it) and work on a machine that has never seen the kit.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= results
ARGS ?=
DATA ?=
PROFILE ?=
RUN_ARGS := $(ARGS) $(if $(DATA),-p DATA '$(DATA)') $(if $(PROFILE),-p PROFILE $(PROFILE))

.PHONY: setup run test browser test-fast notebooks site exercises lab bench bench-gpu weights lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "the kit needs Python 3.11; found " + sys.version.split()[0] + " at " + sys.executable + " (set PYTHON=/path/to/python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# The kit's Jupyter kernel, started with the CPU kernels the committed numbers were computed with
	$(PY) -c 'import sys; from metagen_utils.kernels import pin_cpu_kernels; from ipykernel.kernelspec import install; \
		install(kernel_name="metagen", display_name="Python 3 (metagen kit)", prefix=sys.prefix, env=pin_cpu_kernels())'
	@# The embedded glyph set, rendered from matplotlib's fonts once (about 10 s) and cached in data/glyphs/,
	@# so that the notebooks start from it (a deleted cache is rendered again on first use)
	$(PY) -c 'from metagen_utils.kernels import pin_cpu_kernels; pin_cpu_kernels(); \
		from metagen_utils.data import load_glyphs; load_glyphs(progress=False)'
	@touch $(STAMP)

## The main job: every notebook, in order, on the embedded glyphs (or DATA=/path), into $(OUT)/.
run: $(STAMP)
	$(PY) -m metagen_utils.kit.harness run --out $(OUT) $(RUN_ARGS)

## The whole test suite: unit tests, then every notebook once under nbval against its committed outputs.
test: $(STAMP) browser
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## The system browser the site's test drives: Chromium and its driver, installed from Debian/Ubuntu packages
## when missing (or set METAGEN_CHROMIUM and METAGEN_CHROMEDRIVER to binaries elsewhere).
browser:
	@if [ -n "$$METAGEN_CHROMIUM" ] && [ -n "$$METAGEN_CHROMEDRIVER" ]; then exit 0; fi; \
	if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	echo "installing chromium and chromium-driver (the site's browser test needs them)"; \
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } || \
	{ echo "make test: could not install chromium and chromium-driver with apt-get; install them, or set" \
	       "METAGEN_CHROMIUM and METAGEN_CHROMEDRIVER to the binaries" >&2; exit 1; }

## Unit tests only, without the slow ones (for quick checks while editing).
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not notebooks" -p no:cacheprovider

## Re-execute the notebooks at their default parameters and write the outputs that get committed.
notebooks: $(STAMP)
	$(PY) -m metagen_utils.kit.harness regenerate
	$(PY) -m metagen_utils.kit.assignments

## The rendered site: the committed notebooks as static HTML (Jupyter Book 1.x), offline, in build/site/_build/html.
site: $(STAMP)
	$(PY) -m metagen_utils.kit.site --out build/site

## Student versions of the notebooks (solutions replaced by nbgrader's stub) into exercises/.
exercises: $(STAMP)
	$(PY) -m metagen_utils.kit.assignments

## JupyterLab in the kit's environment; choose the kernel "Python 3 (metagen kit)".
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

## Benchmarks: data set build time and episode sampling speed; one MAML meta-step, kit paths against a per-task
## loop; notebook 02's MAML step on one thread and on two.
bench: $(STAMP)
	$(PY) -m benchmarks.bench_data
	$(PY) -m benchmarks.bench_meta
	$(PY) -m benchmarks.bench_threads

## On a CUDA machine only: notebook 04's meta-step in float32 and bfloat16, peak memory, and the full-profile
## notebook on the GPU, into benchmarks/results/gpu.json. Nothing else needs a GPU.
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.bench_gpu

## Retrain the committed full-profile weights (notebook 04's model, then notebook 05's hybrid; about 18 and 31
## minutes on 2 cores) into results-full/ and say whether they reproduce data/weights/; `python -m
## metagen_utils.generation.pretrained install results-full/weights/04_meta_vae_full` (and inference.pretrained for
## 05_set_vae_full) would then make them the committed ones.
weights: $(STAMP)
	$(PY) -m metagen_utils.kit.harness run --out results-full --only 04 -p PROFILE full
	$(PY) -m metagen_utils.generation.pretrained check results-full/weights/04_meta_vae_full
	$(PY) -m metagen_utils.kit.harness run --out results-full --only 05 -p PROFILE full
	$(PY) -m metagen_utils.inference.pretrained check results-full/weights/05_set_vae_full

## Re-resolve the pinned versions from requirements.in (needs the package index).
lock:
	$(PYTHON) -m venv build/lockenv && build/lockenv/bin/pip install --quiet -r requirements.in
	(head -2 requirements.lock; build/lockenv/bin/pip freeze | sed 's/+cpu$$//') > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build $(OUT)
