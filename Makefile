# The two commands the README promises:
#   make demo   install, get the flowers photos if needed, fine-tune on defaults, export, evaluate,
#               print where results are
#   make test   install (with the AI Camera's toolchain), run the test suite
VENV   ?= .venv
SHARED ?= ../shared
EDGECAM = $(VENV)/bin/edgecam
# Offline machines (like CI) use the weights in ../shared; with a network Keras downloads them.
WEIGHTS = $(if $(wildcard $(SHARED)/weights/*.h5),model.weights=$(SHARED)/weights)
# The flowers photos: ../shared's copy when it is there, else `edgecam datasets get flowers`
# downloads them once (into ~/.cache/edgecam/datasets) and prints where they are.
FLOWERS = $(if $(wildcard $(SHARED)/datasets/flowers/train),$(SHARED)/datasets/flowers)
# More finetune overrides, e.g. make demo DEMO_ARGS="train.epochs=20"
DEMO_ARGS ?=
# The flowers test photos as a Pi camera would see them (`edgecam datasets shift`): made once,
# reported by finetune as an extra test and evaluated on its own. `make clean` removes it too.
SHIFT = runs/flowers-camera-shift

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

demo: install
	@data="$(FLOWERS)"; [ -n "$$data" ] || data=$$($(EDGECAM) datasets get flowers) || exit 1; \
	set -x; \
	{ [ -f $(SHIFT)/camera_shift.json ] || $(EDGECAM) datasets shift "$$data/test" $(SHIFT) -q; } && \
	$(EDGECAM) finetune configs/flowers.yaml data.path="$$data" data.extra_tests.camera_shift=$(SHIFT) \
		$(WEIGHTS) $(DEMO_ARGS) && \
	$(EDGECAM) evaluate runs/flowers/last/model.tflite "$$data/test" --out runs/flowers/last/evaluate && \
	$(EDGECAM) evaluate runs/flowers/last/model.tflite $(SHIFT) --out runs/flowers/last/evaluate_camera_shift
	@echo "results: runs/flowers/last/ (report.md, model.tflite, confusion_matrix.png, evaluate_camera_shift/)"

# The AI Camera's toolchain (its own pinned venv, ~2.3 GB, built once into the cache) lets the
# IMX500 conversion tests run for real; without it (or Java) they skip and say why.
test: install
	$(EDGECAM) imx500 setup || echo "AI Camera toolchain not set up: its conversion tests will skip"
	$(VENV)/bin/python -m pytest

clean:
	rm -rf runs .pytest_cache
