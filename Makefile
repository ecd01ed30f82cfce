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

# The docs site and the whole suite on the main stack, then
# the oldest and the newest supported torch (upstream OpenMMLab) and the onedl family, each in
# its own .venv-STACK (tools/setup_stack.sh), with the subset tools/test_stacks.sh names.
# `make test` removes a stack's environment once its tests pass: the registry's torch is a CUDA
# build of 5 to 6 GB with its libraries, and a CI run that kept them all ran out of disk
# (KEEP_STACKS=1 keeps them; `make test-STACK` alone keeps its own).
STACKS := torch2.1 torch2.15 onedl

test: setup lint docs
	@date -u +'%n==> %T the whole suite on the main stack'
	$(PYTHON) -m pytest tests --durations=20
	$(MAKE) test-stacks

.PHONY: test-stacks
test-stacks:
	@for stack in $(STACKS); do \
		$(MAKE) test-$$stack || exit 1; \
		if [ -z "$(KEEP_STACKS)" ]; then \
			rm -rf .venv-$$stack; echo "removed .venv-$$stack (KEEP_STACKS=1 keeps it)"; \
		fi; \
	done
	@date -u +'%n==> %T done'

test-%: .venv-%/.mmbcn-installed
	bash tools/test_stacks.sh $*

# The stamps are kept (make would delete them as intermediate files and set the stacks up again).
.SECONDARY: $(STACKS:%=.venv-%/.mmbcn-installed)
.venv-%/.mmbcn-installed: tools/stacks/%.txt tools/setup_stack.sh pyproject.toml
	bash tools/setup_stack.sh $*
	touch $@

demo: setup
	$(PYTHON) tools/demo.py

bench: setup
	$(PYTHON) benchmarks/bench_bcn.py

# The documentation site (docs/en, Sphinx + MyST) into docs/_build/html. Warnings are errors, so
# a link to a missing page or heading anchor, or a docstring that does not parse, fails it.
# -E: each build reads every page (the API reference resolves a name on one page to the object
# documented on another, which a build that re-reads only the changed pages would not see).
.PHONY: docs
docs: setup
	$(PYTHON) -m sphinx -E -W --keep-going -b html docs/en docs/_build/html

clean-env:
	rm -rf $(VENV) $(STACKS:%=.venv-%)

# Which normalization for a micro-batch task? The normalization study in small, on CPU: the
# DeepLabV3 demo task at 2 gloo processes x 1 image, 5 presets x 3 seeds (tools/norm_study.py).
# study-rate: the same task, BCN+WS with the three ways of setting its update rate r.
STUDY_CONFIG := configs/study/deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py
STUDY_DATA   := $(PYTHON) -c "from mmbcn.datasets import ensure_demo_data; ensure_demo_data()"

.PHONY: study study-rate

study: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --norms bn syncbn gn gn-ws bcn-ws \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study

study-rate: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --norms bcn-ws-lr bcn-ws-constant bcn-ws-cma \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study-rate

# study-other: the same task with Proxy Normalization (gn-pn) and the Revisiting-BN recipe added
# to the presets with a scale (-rbn; bn-rbn cannot train here, as bn). study-gn-pool: the presets
# on the same task with the ASPP image-pooling branch's norm kept GroupNorm for every preset
# (its 1x1 features give batch statistics one value per channel and image), where BN trains.
STUDY_GN_POOL := configs/study/deeplabv3_r18-d8_gn-ws_2xb1-study-gn-pool-demo-shapes.py

.PHONY: study-other study-gn-pool

study-other: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --norms gn-pn bn-rbn gn-ws-rbn bcn-ws-rbn \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study-other

study-gn-pool: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_GN_POOL) \
		--norms bn gn gn-ws bcn-ws gn-pn bn-rbn gn-ws-rbn bcn-ws-rbn \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study-gn-pool

# study-pretrained: the papers' protocol on the default task: per preset and seed, the demo's
# shapes classifier (mmpretrain ResNetV1c-18, 1 process x 16 images, 4 epochs) is pretrained with
# the preset, then DeepLabV3 R18-D8 (2 processes x 1 image, 120 iterations) is fine-tuned from
# its backbone with the same preset, loaded strictly.
STUDY_PRETRAIN := configs/study/resnet18-v1c_bcn-ws_1xb16-study-pretrain-demo-shapes.py

.PHONY: study-pretrained

study-pretrained: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --pretrain $(STUDY_PRETRAIN) \
		--norms bn syncbn gn gn-ws bcn-ws gn-pn \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study-pretrained

# study-long: the default task from scratch on a 5x longer schedule (600 iterations, the poly
# schedule stretched with it, mIoU every 100), gn-ws against bcn-ws: does BCN+WS's gap to GN+WS
# shrink, hold or grow with training? LONG_SEEDS=0 for one seed (16 min 24 s measured on a
# shared 2-core VM).
LONG_SEEDS ?= 0 1 2

.PHONY: study-long

study-long: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --norms gn-ws bcn-ws --seeds $(LONG_SEEDS) \
		--gpus 2 --stats-interval 25 --work-dir work_dirs/study-long --cfg-options \
		train_cfg.max_iters=600 train_cfg.val_interval=100 param_scheduler.0.end=600 \
		default_hooks.checkpoint.interval=600 default_hooks.logger.interval=25

# study-stages: BCN's two stages apart on the default task: GN+WS and BCN+WS beside BCN's batch
# stage alone (bcn-ws-batch, micro-batch with the rate hook's defaults) and its channel stage
# alone (bcn-ws-channel, GN+WS with BCN's parameterization), mmbcn's ablation layers: which
# stage costs BCN+WS its mIoU against GN+WS?
.PHONY: study-stages

study-stages: setup
	$(STUDY_DATA)
	$(PYTHON) tools/norm_study.py $(STUDY_CONFIG) --norms gn-ws bcn-ws bcn-ws-batch bcn-ws-channel \
		--seeds 0 1 2 --gpus 2 --work-dir work_dirs/study-stages
