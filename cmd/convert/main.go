// Command convert turns a Hugging Face InternLM3 checkpoint into a model directory a browser can stream
// (docs/FORMAT.md), or verifies one:
//
//	go run ./cmd/convert [-quant q4|q8|f16|f32] [-group 32] [-shard-size 64MiB] [-lm-head q8] [-force] [-q] SRC DST
//	go run ./cmd/convert -verify DST
//
// SRC is a local checkpoint directory or a hub id owner/name. On error: exit status 1, one line on stderr,
// nothing at DST.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ilmweb/ilmweb/converter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := converter.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
