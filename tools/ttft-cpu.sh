#!/bin/sh
# ttft-cpu.sh [WORK_DIR]: time to first token of the CPU engine at full size, as a user meets it.
# Makes (once, under WORK_DIR, default .cache/ttft-cpu) a random-weight model of InternLM3-8B's shapes
# (synth -preset internlm3-8b, 17.6 GB of bf16, converted to q4 and then the bf16 removed), then runs
#   chat -backend cpu -prompt Hi -max-tokens 4 -v
# with the official system prompt, and prints chat's statistics (load time and memory, prompt tokens, first
# token, decode speed), the wall time to exit and the peak RSS (GNU time), and the load average around it.
set -eu
work=${1:-.cache/ttft-cpu}
mkdir -p "$work/bin"
go build -trimpath -o "$work/bin/" ./cmd/synth ./cmd/convert ./cmd/chat
if [ ! -f "$work/q4/manifest.json" ]; then
	"$work/bin/synth" -preset internlm3-8b -out "$work/hf"
	"$work/bin/convert" -q "$work/hf" "$work/q4"
	rm -rf "$work/hf"
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f 'wall %e s, peak RSS %M KiB' \
	"$work/bin/chat" -backend cpu -model "$work/q4" -prompt Hi -max-tokens 4 -temperature 0 -v </dev/null
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
