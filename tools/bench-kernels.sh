#!/bin/sh
# Kernel variants at full width (`make bench-kernels`): the full-width InternLM3 cut to 2 layers (synthetic
# random weights, q4, the model bench-longctx uses), run by cmd/bench on the GPU engine: first with the
# autotune measuring from scratch (an empty cache dir), which prints every candidate's time and its weight
# bytes/s as a ratio to the copy probe of the same run; then prefill and decode with each prefill matmul
# variant forced. PROMPT=N prompt tokens (default 128), GEN=N decoded (default 8). Runs on lavapipe unless
# VK_ICD_FILENAMES says otherwise.
set -eu
work=${WORK:-/tmp/ilmweb-longctx}
prompt=${PROMPT:-128}
gen=${GEN:-8}
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json}
sh tools/model-2layer.sh "$work"
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
echo "load: $(cat /proc/loadavg)"
XDG_CACHE_HOME=$cache build/bench -model "$work/q4" -backend gpu -prompt-tokens "$prompt" -gen-tokens "$gen"
for mm in tiled subgroup; do
	XDG_CACHE_HOME=$cache build/bench -model "$work/q4" -backend gpu -prompt-tokens "$prompt" -gen-tokens "$gen" -matmul $mm
done
echo "load: $(cat /proc/loadavg)"
