#!/bin/sh
# Kernel variants in the browser (`make bench-kernels-browser`): e2e TestBrowserKernels in headless Chromium
# (WebGPU on SwiftShader here) on the full-width InternLM3 cut to 2 layers (tools/model-2layer.sh, the model
# bench-kernels.sh runs natively): the autotune timing every candidate, each as a ratio to a copy probe in
# the same page, then decode with each matvec variant and prefill with each matmul variant forced.
set -eu
work=${WORK:-/tmp/ilmweb-longctx}
sh tools/model-2layer.sh "$work"
make web
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
KERNELS_MODEL=$(cd "$work/q4" && pwd) CI=1 go test ./e2e/ -run '^TestBrowserKernels$' -count=1 -v -timeout 3h |
	grep -v '^ *console'
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
