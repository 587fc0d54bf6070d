#!/bin/sh
# The CPU engine against llama.cpp on the same shapes and weights: InternLM3-8B's width cut to 2 layers, q4
# (group 32) for ours and the same blocks as Q4_0 in a GGUF for llama.cpp (tools/gguf). Both run alternating
# in one process tree (tools/llamacpp/bench.mjs) and the medians and ratios ours ÷ llama.cpp are printed.
#
#	make bench-cpu [ROUNDS=5]      (or: sh tools/bench-cpu.sh NODE_MODULES [ROUNDS])
#
# The models are made once under .cache/bench-cpu (~2.6 GB of bf16 written and deleted, 1.5 GB kept).
set -eu
modules=$1
rounds=${2:-5}
dir=.cache/bench-cpu
mkdir -p $dir/bin
go build -o $dir/bin/ ./cmd/synth ./cmd/convert ./cmd/bench ./tools/gguf
if [ ! -f $dir/q4/manifest.json ]; then
	rm -rf $dir/hf $dir/q4
	$dir/bin/synth -preset internlm3-8b -layers 2 -out $dir/hf
	$dir/bin/convert -q -quant q4 -group 32 $dir/hf $dir/q4
	rm -rf $dir/hf
fi
if [ ! -f $dir/model.gguf ]; then
	$dir/bin/gguf -model $dir/q4 -out $dir/model.gguf.tmp
	mv $dir/model.gguf.tmp $dir/model.gguf
fi
echo "$(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
node tools/llamacpp/bench.mjs "$modules" $dir/model.gguf "$rounds" 128 32 "$(nproc)" -- \
	$dir/bin/bench -backend cpu -model $dir/q4 -prompt-tokens 128 -gen-tokens 32 -json
