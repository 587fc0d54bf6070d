//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "cmd/worker runs on Cloudflare Workers: build it with `make worker` (GOOS=js GOARCH=wasm) and run it with wrangler (see README.md, Edge hosting)")
	os.Exit(2)
}
