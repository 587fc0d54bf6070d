# The two commands a fresh machine needs: `make run` and `make test` (see README.md).
GO ?= go
MODEL ?= tiny
CACHE := .cache
TINY := $(CACHE)/tiny-hf

.PHONY: run test test-go vet fuzz bench deps clean

## run: chat in the terminal with the model (for now: a synthetic tiny model, made on first use)
run: $(TINY)/config.json
	$(GO) run ./cmd/chat -model $(TINY)

$(TINY)/config.json:
	$(GO) run ./cmd/synth -preset tiny -out $(TINY)

## test: every test, installing what the tests need first
test: deps vet test-go

deps:
	@$(GO) version >/dev/null || { echo "Go 1.26 is required: https://go.dev/dl/"; exit 1; }
	$(GO) mod download

vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet ./model/ ./safetensors/

# Fuzz targets' seed corpora run as ordinary tests here; `make fuzz` explores further.
test-go:
	$(GO) test -count=1 ./...

fuzz:
	$(GO) test -run=NONE -fuzz=FuzzParseHeader -fuzztime=60s ./safetensors/
	$(GO) test -run=NONE -fuzz=FuzzTokenizerEncode -fuzztime=60s ./model/

bench:
	$(GO) test -run=NONE -bench=. -benchtime=3x ./model/

clean:
	rm -rf $(CACHE)
