#!/bin/sh
# Peak host memory (max RSS, GNU time) of cmd/chat loading a model: it starts interactively on an empty input,
# so it loads the model and exits without answering (at 8B on lavapipe a prompt alone takes many minutes):
#
#	tools/peak-rss.sh MODEL_DIR [BACKEND [REV]]
#
# BACKEND is gpu (the default; on lavapipe unless VK_ICD_FILENAMES says otherwise) or cpu. REV, a git
# revision, builds cmd/chat as it was there (from `git archive`, leaving the work tree alone), so that one
# machine measures before and after a change; without it, the work tree's cmd/chat is measured.
set -eu
model=$1
backend=${2:-gpu}
rev=${3:-}
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "$rev" ]; then
	mkdir "$tmp/src"
	git archive "$rev" | tar -x -C "$tmp/src"
	(cd "$tmp/src" && go build -o "$tmp/chat" ./cmd/chat)
else
	go build -o "$tmp/chat" ./cmd/chat
fi
echo "cmd/chat at ${rev:-the work tree}, -backend $backend, $model ($(du -sh "$model" | cut -f1))"
# The Go heap's peak comes from the collector's trace (heap size when each collection started): on lavapipe
# the RSS also holds the "GPU" buffers, the Go heap only what the host side keeps.
GODEBUG=gctrace=1 /usr/bin/time -o "$tmp/time" -f "peak RSS %M KiB, %e s wall, %U s user" \
	"$tmp/chat" -model "$model" -backend "$backend" </dev/null >/dev/null 2>"$tmp/stderr" || { cat "$tmp/stderr" >&2; exit 1; }
grep -v '^gc ' "$tmp/stderr" >&2 || true
heap=$(grep -o '[0-9]*->[0-9]*->[0-9]* MB' "$tmp/stderr" | awk -F'->' '$1 + 0 > max { max = $1 + 0 } END { print max + 0 }')
echo "$(cat "$tmp/time"); Go heap peak $heap MB"
