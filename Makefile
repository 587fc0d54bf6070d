# The two commands a fresh machine needs: `make run` and `make test` (see README.md).
GO ?= go
CACHE := .cache
WEB_OUT := build/web
WEB_NPM := $(CACHE)/web-npm
WORKER_OUT := build/worker
WORKER_NPM := $(CACHE)/worker-npm
CLIENTS_NPM := $(CACHE)/clients-npm
LLAMACPP_NPM := $(CACHE)/llamacpp-npm

# MODEL is "tiny" (a synthetic model, made on first use, so the page works out of the box) or a Hugging
# Face repo id such as internlm/internlm3-8b-instruct, downloaded and converted to q4 on first use.
MODEL ?= tiny
MODELS := $(CACHE)/models
ifeq ($(MODEL),tiny)
MODEL_DIR := $(MODELS)/tiny-q4
else
MODEL_DIR := $(MODELS)/$(subst /,--,$(MODEL))-q4
endif

.PHONY: run test test-go vet fuzz bench bench-cpu bench-gpu bench-gpu-build bench-longctx bench-kernels bench-kernels-browser stress-gpu deps test-deps apt-nodejs clean web worker

## run: build the page, make sure a converted model exists, and serve both (the URL is printed)
run: deps web $(MODEL_DIR)/manifest.json
	$(GO) run ./cmd/serve -site $(WEB_OUT) -model $(MODEL_DIR)

$(MODELS)/tiny-q4/manifest.json:
	rm -rf $(MODELS)/tiny-hf
	$(GO) run ./cmd/synth -preset tiny -out $(MODELS)/tiny-hf
	$(GO) run ./cmd/convert -force $(MODELS)/tiny-hf $(MODELS)/tiny-q4

$(MODELS)/%-q4/manifest.json:
	$(GO) run ./cmd/convert -force $(MODEL) $(MODEL_DIR)

## test: every test, installing what the tests need first
test: deps test-deps vet web test-go

# apt-get install, when missing, of the Debian packages named in $(1).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null; then \
			SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
			$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
		else \
			echo "warning: install$$missing"; \
		fi; \
	fi
endef

# What building and serving needs: Go's modules, and Node.js with npm for the page's pinned libraries.
deps:
	@$(GO) version >/dev/null || { echo "Go 1.26 is required: https://go.dev/dl/"; exit 1; }
	$(GO) mod download
	@command -v npm >/dev/null || $(MAKE) --no-print-directory apt-nodejs

apt-nodejs:
	$(call apt_install,nodejs npm)

# What the tests need beyond that: Mesa's Vulkan drivers (lavapipe) for the GPU tests, Debian's Chromium for
# the browser tests (e2e/), wrangler (pinned in cmd/worker/package-lock.json) for the edge worker's test, and
# the official openai and ollama clients (pinned in server/clients/package-lock.json) for the API's test.
test-deps:
	$(call apt_install,chromium mesa-vulkan-drivers libvulkan1)
	$(MAKE) --no-print-directory $(WORKER_NPM)/node_modules/.package-lock.json $(CLIENTS_NPM)/node_modules/.package-lock.json

vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./model/ ./safetensors/ ./webgpu/ ./shaders/ ./wasm/

# Fuzz targets' seed corpora run as ordinary tests here; `make fuzz` explores further.
# GPU tests run on lavapipe unless VK_ICD_FILENAMES names another Vulkan driver; REQUIRE_GPU=1 makes a
# missing adapter fail them instead of skipping them. The browser tests (e2e/, the edge worker's above all)
# take over go test's default 10 minutes on a loaded 2-core machine: hence -timeout.
LAVAPIPE_ICD := /usr/share/vulkan/icd.d/lvp_icd.$(shell uname -m).json
test-go:
	VK_ICD_FILENAMES=$${VK_ICD_FILENAMES:-$(LAVAPIPE_ICD)} REQUIRE_GPU=$${REQUIRE_GPU:-1} $(GO) test -count=1 -timeout 30m ./...

## web: the chat page, built into build/web (serve it: go run ./cmd/serve -site build/web -model DIR)
web: $(WEB_NPM)/node_modules/.package-lock.json
	rm -rf $(WEB_OUT) && mkdir -p $(WEB_OUT)
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" $(WEB_OUT)/
	if [ -d wasm ]; then GOOS=js GOARCH=wasm $(GO) build -trimpath -o $(WEB_OUT)/engine.wasm ./wasm; fi
	node web/build.mjs $(WEB_NPM)/node_modules $(WEB_OUT)

# The page's libraries, pinned in web/package-lock.json, installed outside web/ and vendored by build.mjs.
$(WEB_NPM)/node_modules/.package-lock.json: web/package.json web/package-lock.json
	mkdir -p $(WEB_NPM) && cp web/package.json web/package-lock.json $(WEB_NPM)/
	cd $(WEB_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

## worker: the edge server (cmd/worker: Go on Cloudflare Workers, the site and models from R2) into build/worker;
## deploy it with wrangler.toml (README.md, Edge hosting)
worker: $(WORKER_NPM)/node_modules/.package-lock.json
	rm -rf $(WORKER_OUT)
	$(GO) run github.com/syumai/workers/cmd/workers-assets-gen -mode=go -o $(WORKER_OUT)
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags='-s -w' -o $(WORKER_OUT)/app.wasm ./cmd/worker
	@echo "$(WORKER_OUT)/app.wasm: $$(wc -c < $(WORKER_OUT)/app.wasm) bytes, $$(gzip -9c $(WORKER_OUT)/app.wasm | wc -c) gzipped (Workers free plan: 3 MiB gzipped)"
	@echo "wrangler: $(WORKER_NPM)/node_modules/.bin/wrangler"

# Wrangler for the worker, pinned in cmd/worker/package-lock.json and installed outside the source tree. Its
# packages ship their binaries (workerd, esbuild) as npm dependencies: no install scripts needed.
$(WORKER_NPM)/node_modules/.package-lock.json: cmd/worker/package.json cmd/worker/package-lock.json
	mkdir -p $(WORKER_NPM) && cp cmd/worker/package.json cmd/worker/package-lock.json $(WORKER_NPM)/
	cd $(WORKER_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# stress-gpu runs the GPU-using test binaries (webgpu, backend, server) RUNS times each, in parallel and
# under GC pressure, and counts aborts (tools/gpu-stress.sh). Not part of `make test`.
RUNS ?= 50
stress-gpu:
	bash tools/gpu-stress.sh $(RUNS)

# The API clients for server/clients_test.go, installed outside the source tree like the others.
$(CLIENTS_NPM)/node_modules/.package-lock.json: server/clients/package.json server/clients/package-lock.json
	mkdir -p $(CLIENTS_NPM) && cp server/clients/package.json server/clients/package-lock.json $(CLIENTS_NPM)/
	cd $(CLIENTS_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParseHeader -fuzztime=60s ./safetensors/
	$(GO) test -run=NONE -fuzz=FuzzTokenizerEncode -fuzztime=60s ./model/
	$(GO) test -run=NONE -fuzz=FuzzParseManifest -fuzztime=60s ./model/
	$(GO) test -run=NONE -fuzz=FuzzNewTokenizer -fuzztime=60s ./model/
	$(GO) test -run=NONE -fuzz=FuzzParseConfig -fuzztime=60s ./model/
	$(GO) test -run=NONE -fuzz=FuzzSampler -fuzztime=60s ./model/

# bench-gpu-build prepares, here, what `make bench-gpu` runs on a lent GPU machine (carry build/gpu and .gl):
# the tools as x86-64 binaries and the Vulkan loader packages such a machine may lack.
bench-gpu-build:
	mkdir -p build/gpu .gl
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o build/gpu/ ./cmd/synth ./cmd/convert ./cmd/bench
	grep -qx '/.gl/' .git/info/exclude || echo /.gl/ >> .git/info/exclude
	cd .gl && apt-get download libvulkan1

bench-gpu:
	sh tools/bench-gpu.sh build/gpu

bench:
	$(GO) test -run=NONE -bench=. -benchtime=3x ./model/

## bench-cpu: the CPU engine against llama.cpp (node-llama-cpp, prebuilt) on the same 2-layer full-width q4 model
ROUNDS ?= 5
bench-cpu: deps $(LLAMACPP_NPM)/node_modules/.package-lock.json
	sh tools/bench-cpu.sh $(LLAMACPP_NPM)/node_modules $(ROUNDS)

# node-llama-cpp, pinned in tools/llamacpp/package-lock.json with its prebuilt linux-x64 binaries (an npm
# dependency: no install scripts, no download, no build); the other platforms' optional packages are skipped.
# npm install, not ci: npm leaves the other platforms' optional packages out of the lock, which ci rejects.
$(LLAMACPP_NPM)/node_modules/.package-lock.json: tools/llamacpp/package.json tools/llamacpp/package-lock.json
	mkdir -p $(LLAMACPP_NPM) && cp tools/llamacpp/package.json tools/llamacpp/package-lock.json $(LLAMACPP_NPM)/
	cd $(LLAMACPP_NPM) && npm install --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error

# bench-longctx: decode speed at positions 0, 4K, 16K and 32K on a full-width 2-layer model, per attention
# variant and KV cache dtype, as ratios to position 0 (tools/bench-longctx.sh; lavapipe unless
# VK_ICD_FILENAMES names another driver).
bench-longctx:
	sh tools/bench-longctx.sh

# bench-kernels: every autotune candidate on a full-width 2-layer model, as ratios to the copy probe, then
# prefill and decode with each prefill matmul variant (tools/bench-kernels.sh; lavapipe unless
# VK_ICD_FILENAMES names another driver).
bench-kernels:
	sh tools/bench-kernels.sh

# bench-kernels-browser: the same model's kernel variants in headless Chromium (WebGPU on SwiftShader
# here), every autotune candidate and each forced matvec and matmul variant as ratios to a copy probe in
# the same page (tools/bench-kernels-browser.sh)
bench-kernels-browser:
	sh tools/bench-kernels-browser.sh

clean:
	rm -rf $(CACHE) build
