#!/bin/sh
# Full-size GPU benchmark for a lent GPU machine (x86-64, NVIDIA, no internet, no Go), run as `make bench-gpu`.
# It uses binaries built here by `make bench-gpu-build` (carried in build/gpu) and, when the machine has no
# Vulkan loader, the Debian packages fetched into .gl/ (see the device tool's README). It synthesizes a
# full-size InternLM3 checkpoint with random weights, converts it to q4, and prints one report: the
# autotune's choice and time (the engine tunes at load), prefill and decode speed against the copy probe
# measured in the same run, then decode at positions 0, 4K, 16K and 32K as ratios to position 0.
# LAYERS=N makes a smaller model (for trying the script on lavapipe).
set -eu
bin=${1:-build/gpu}
work=${WORK:-/tmp/ilmweb-bench}
layers=${LAYERS:-48}

if ! ldconfig -p | grep -q libvulkan.so.1; then
	for f in .gl/*.deb; do dpkg -x "$f" /; done
	ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_ICD_FILENAMES:-}" ]; then
	export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

rm -rf "$work" && mkdir -p "$work"
start=$(date +%s)
"$bin/synth" -preset internlm3-8b -layers "$layers" -out "$work/hf"
echo "synth: $(( $(date +%s) - start )) s" >&2
start=$(date +%s)
"$bin/convert" -q "$work/hf" "$work/q4"
echo "convert: $(( $(date +%s) - start )) s" >&2
rm -rf "$work/hf"
export XDG_CACHE_HOME="$work/cache" # a fresh autotune cache: the report shows a measured choice
"$bin/bench" -model "$work/q4" -backend gpu -prompt-tokens "${PROMPT:-128}" -gen-tokens "${GEN:-64}"
"$bin/bench" -model "$work/q4" -backend gpu -positions "${POSITIONS:-0,4096,16384,32768}" -gen-tokens "${GEN_AT:-16}"
