#!/bin/sh
# Full-size GPU benchmark for a lent GPU machine (x86-64, NVIDIA, no internet, no Go), run as `make bench-gpu`.
# It uses binaries built here by `make bench-gpu-build` (carried in build/gpu) and, when the machine has no
# Vulkan loader, the Debian packages fetched into .gl/ (see the device tool's README). It synthesizes a
# full-size InternLM3 checkpoint with random weights, converts it to q4 and prints cmd/bench's JSON.
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
"$bin/bench" -model "$work/q4" -backend gpu -prompt-tokens "${PROMPT:-128}" -gen-tokens "${GEN:-64}" -json
