#!/bin/sh
# Long-context decode benchmark (`make bench-longctx`): a full-width InternLM3 cut to 2 layers (synthetic
# random weights, converted to q4), decode tok/s at positions 0, 4K, 16K and 32K as ratios to position 0,
# for the single-workgroup and the split-KV attention, with the f32 and the f16 KV cache, and the autotune's
# own choice. GEN=N tokens per position (default 3). Runs on lavapipe unless VK_ICD_FILENAMES says otherwise.
set -eu
work=${WORK:-/tmp/ilmweb-longctx}
gen=${GEN:-3}
positions=${POSITIONS:-0,4096,16384,32768}
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json}
sh tools/model-2layer.sh "$work"
echo "load: $(cat /proc/loadavg)"
for kv in "" -kv-f16; do
	for att in single split32 ""; do
		build/bench -model "$work/q4" -backend gpu -positions "$positions" -gen-tokens "$gen" ${att:+-attention $att} $kv
	done
done
echo "load: $(cat /proc/loadavg)"
