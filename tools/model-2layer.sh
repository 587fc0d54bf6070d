#!/bin/sh
# The full-width InternLM3 cut to 2 layers (synthetic random weights, converted to q4) that bench-longctx.sh
# and bench-kernels.sh run: builds synth, convert and bench into build/, and the model into $1/q4 unless it
# is there already.
set -eu
work=$1
mkdir -p "$work" build
go build -o build/ ./cmd/synth ./cmd/convert ./cmd/bench
if [ ! -f "$work/q4/manifest.json" ]; then
	rm -rf "$work/hf" "$work/q4"
	build/synth -preset internlm3-8b -layers 2 -out "$work/hf"
	build/convert -q "$work/hf" "$work/q4"
	rm -rf "$work/hf"
fi
