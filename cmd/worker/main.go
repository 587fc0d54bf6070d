//go:build js && wasm

// Command worker is ilmweb's edge server: a Cloudflare Worker that serves the chat site and converted
// models from an R2 bucket with the same headers as cmd/serve (see package worker, wrangler.toml and
// README.md's "Edge hosting"). Build it with `make worker` (GOOS=js GOARCH=wasm, plus syumai/workers'
// JavaScript glue) into build/worker; run it with wrangler.
package main

import (
	"github.com/syumai/workers"

	"github.com/ilmweb/ilmweb/worker"
)

func main() {
	workers.Serve(worker.Handler{Name: worker.Binding})
}
