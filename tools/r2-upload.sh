#!/usr/bin/env bash
# r2-upload.sh uploads a directory to an R2 bucket for the edge worker (cmd/worker), one
# `wrangler r2 object put` per file, each with its content type:
#
#   tools/r2-upload.sh ilmweb/site  build/web                          # the built page (make web)
#   tools/r2-upload.sh ilmweb/model .cache/models/tiny-q4              # a converted model, served at /model/
#   tools/r2-upload.sh ilmweb/model/8b DIR                             # another, used with ?model=model/8b/
#   tools/r2-upload.sh ilmweb/site build/web --local --persist-to DIR  # into wrangler dev's simulated bucket
#
# The first argument is BUCKET/PREFIX, the second the directory; everything after is passed to wrangler
# (--local, --persist-to, -c CONFIG, ...). Without --local, wrangler 3 writes to the real bucket: log in
# first (wrangler login, or CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID).
#
# Dotfiles are skipped (the worker never serves them). manifest.json, index.html and sw.js go last, after
# the files they name, so a reader never finds a manifest whose shards are not there yet; re-uploading a
# model therefore replaces its manifest only once its new shards are in place.
#
# Environment: WRANGLER (default: the pinned one make installs in .cache/worker-npm, else `npx wrangler`),
# R2_UPLOAD_JOBS (parallel uploads; default 4, and 1 with --local). A failed put is tried twice more.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 BUCKET/PREFIX DIR [wrangler options...]" >&2
	exit 2
fi
dest=${1%/}
dir=${2%/}
shift 2
case $dest in
*/*) ;;
*) echo "$0: $dest: give BUCKET/PREFIX (site/ or model/...), e.g. ilmweb/site" >&2; exit 2 ;;
esac
if [ ! -d "$dir" ]; then
	echo "$0: $dir is not a directory" >&2
	exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${WRANGLER:-}" ]; then
	if [ -x "$root/.cache/worker-npm/node_modules/.bin/wrangler" ]; then
		WRANGLER=$root/.cache/worker-npm/node_modules/.bin/wrangler
	else
		WRANGLER="npx wrangler@3.114.17"
	fi
fi
export WRANGLER WRANGLER_SEND_METRICS=${WRANGLER_SEND_METRICS:-false}
# Parallel puts into wrangler's local simulation collide on its SQLite state (R2 500s): one at a time there.
jobs=4
for a in "$@"; do [ "$a" = --local ] && jobs=1; done
jobs=${R2_UPLOAD_JOBS:-$jobs}

# put DEST DIR [wrangler options] REL: upload one file with the type the worker serves it with (the
# worker's table decides; the object's own type counts only for extensions the worker does not know).
put() {
	local dest=$1 dir=$2 rel=${!#} ct out
	shift 2
	set -- "${@:1:$#-1}"
	case $rel in
	*.html | *.htm) ct="text/html; charset=utf-8" ;;
	*.js | *.mjs) ct="text/javascript; charset=utf-8" ;;
	*.css) ct="text/css; charset=utf-8" ;;
	*.json | *.map) ct="application/json" ;;
	*.wasm) ct="application/wasm" ;;
	*.webmanifest) ct="application/manifest+json" ;;
	*.svg) ct="image/svg+xml" ;;
	*.txt) ct="text/plain; charset=utf-8" ;;
	*.png) ct="image/png" ;;
	*.jpg | *.jpeg) ct="image/jpeg" ;;
	*.gif) ct="image/gif" ;;
	*.webp) ct="image/webp" ;;
	*.woff2) ct="font/woff2" ;;
	*.woff) ct="font/woff" ;;
	*.ttf) ct="font/ttf" ;;
	*) ct="application/octet-stream" ;;
	esac
	# wrangler's own output is chatty (banner, update notice): keep it for failures only.
	local try
	for try in 1 2 3; do
		if out=$($WRANGLER r2 object put "$dest/$rel" --file "$dir/$rel" --content-type "$ct" "$@" 2>&1); then
			echo "$dest/$rel ($ct)"
			return 0
		fi
		sleep "$try"
	done
	printf '%s\n' "$out" >&2
	echo "r2-upload: $dest/$rel failed 3 times" >&2
	return 1
}

export -f put

# upload [wrangler options] reads NUL-separated paths relative to $dir on stdin and puts them,
# R2_UPLOAD_JOBS at a time (xargs appends each path as put's last argument).
upload() {
	xargs -0 -r -n 1 -P "$jobs" bash -c 'put "$@"' put-one "$dest" "$dir" "$@"
}

# files "first"|"last": the relative paths to upload in that round, NUL-separated.
files() {
	local flag=-Ev
	[ "$1" = last ] && flag=-E
	(cd "$dir" && find . -type f ! -path '*/.*' -print) | LC_ALL=C sort | sed 's#^\./##' |
		{ grep "$flag" '^(.*/)?(manifest\.json|index\.html|sw\.js)$' || true; } | tr '\n' '\0'
}

files first | upload "$@"
files last | upload "$@"
