# walloc — two commands on a fresh machine:  make demo   |   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch that lies on this machine's disk; a bare `torch` would pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed-stamp
# Where this machine keeps that wheel; used when present, so the install never depends on an
# environment variable pointing there.
LOCAL_WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: install demo test fuzz bench bench-rd bench-audio bench-memory train train-ladder train-audio train-audio-ladder export fetch-audio clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(LOCAL_WHEELS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# bytecode now, as a wheel install would: where PYTHONDONTWRITEBYTECODE is set (this machine),
	@# an editable install otherwise recompiles the package on every command (about 0.1 s of 0.4)
	$(BIN)/python -m compileall -q walloc_cli
	touch $(STAMP)

demo: install
	$(BIN)/python bench/demo.py

# pytest exits 5 when it collected no tests: reported on its own line, not counted as a failure.
test: install
	$(BIN)/python -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# The decoders' fuzz harness (#11): CASES mutated .wlc files of every model and modality through
# every decode entry point, in worker processes with a per-case timeout and an RSS cap; prints
# the counts (ok, WallocError, other exceptions, hangs, crashes) and the peak worker RSS.
# Findings are kept in cache/fuzz/ (replay: python bench/fuzz.py --replay FILE).  `make test`
# runs the first 2,000 cases of the same stream in process.
CASES ?= 100000
fuzz: install
	$(BIN)/python bench/fuzz.py --cases $(CASES)

bench: install
	$(BIN)/python bench/speed.py --data ../shared/data/images/val
	$(BIN)/python bench/bench_images.py --data ../shared/data/images/val --train ../shared/data/images/train
	@$(MAKE) --no-print-directory bench-audio

# Rate–distortion curves and BD-rates of walloc against JPEG / WebP / AVIF (matplotlib: the [bench] extra).
bench-rd: install
	@$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.7'
	$(BIN)/python -m walloc_cli bench ../shared/data/images/val --plot bench/rd.png --json bench/rd.json

# walloc's audio quality sweep against Opus 12–96 kbps, scored by ViSQOL, log-mel, HF energy and PSNR
# (scipy, visqol-python and matplotlib: the [bench] extra; opusenc/opusdec from opus-tools).
# Opus results are cached in cache/, so a rerun recomputes walloc only.
bench-audio: install
	@$(BIN)/python -c "import matplotlib, scipy, visqol, numba" 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@if [ -d data/audio/val ]; then $(BIN)/python bench/bench_audio.py --data data/audio/val --plot bench/audio-rd.png --json bench/audio-rd.json; else echo "audio bench skipped: run make fetch-audio first"; fi

# Training resumes from runs/<name>/checkpoint.pt; MINUTES is wall-clock time for this call.
MINUTES ?= 60
train: install
	$(BIN)/python -m walloc_cli.fit.train --preset rgb-16x --data ../shared/data/images --run runs/rgb-16x --minutes $(MINUTES)

# The quality-ladder image model rgb-1x: closed-form fit (PCA + histograms, then the tables refitted
# on the encoder's RD rounding), the decoder's filter and refiner: about 40 minutes on 2 cores.
train-ladder: install
	$(BIN)/python -m walloc_cli.fit.ladder --data ../shared/data/images --out weights/ --name rgb-1x --images 300

# The perceptual audio ladder stereo-1x (the default audio model): histograms and a rate map,
# no gradients, about 2 minutes on 2 cores.  Needs the music: make fetch-audio.
train-audio-ladder: install
	$(BIN)/python -m walloc_cli.fit.audio --data data/audio --out weights/ --name stereo-1x

fetch-audio:
	bash ../shared/data/audio/fetch-audio.sh data/audio

train-audio: install
	$(BIN)/python -m walloc_cli.fit.train --preset stereo-ms --data data/audio --run runs/stereo-ms --minutes $(MINUTES)

export: install
	$(BIN)/python -m walloc_cli.fit.train --run runs/rgb-16x --export weights/
	$(BIN)/python -m walloc_cli.fit.train --run runs/stereo-ms --export weights/

clean:
	rm -rf $(VENV) demo-out .pytest_cache

# Peak memory of huge inputs (1 h stereo audio, 96 MP image): minutes, not part of `make bench`.
bench-memory: install
	$(BIN)/python bench/memory.py --hours 1 --megapixels 96 --models rgb-1x rgb-16x
