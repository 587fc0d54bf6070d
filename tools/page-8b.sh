#!/bin/sh
# page-8b.sh [WORK_DIR]: the page's engine at full size in headless Chromium (WebGPU on SwiftShader): the
# cold load broken down (engine start, manifest and device check with the self-test, download, set-up,
# upload with the hash checks), the first answer, then a reload from storage and the same question with
# the system prompt's KV cache from storage (e2e TestFullSizePage). Makes, once, under WORK_DIR (default
# .cache/ttft-cpu, shared with ttft-cpu.sh) a random-weight InternLM3-8B converted to q4. Takes ~30 min.
set -eu
work=${1:-.cache/ttft-cpu}
mkdir -p "$work/bin"
go build -trimpath -o "$work/bin/" ./cmd/synth ./cmd/convert
if [ ! -f "$work/q4/manifest.json" ]; then
	"$work/bin/synth" -preset internlm3-8b -out "$work/hf"
	"$work/bin/convert" -q "$work/hf" "$work/q4"
	rm -rf "$work/hf"
fi
make web
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
FULL_MODEL=$(cd "$work/q4" && pwd) CI=1 go test ./e2e/ -run '^TestFullSizePage$' -count=1 -v -timeout 3h
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
