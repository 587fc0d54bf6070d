// Command tokenize reads UTF-8 text on stdin and prints its token ids (no BOS) as a JSON array:
//
//	echo hello | go run ./cmd/tokenize -model DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ilmweb/ilmweb/model"
)

func main() {
	dir := flag.String("model", "", "model directory")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "tokenize:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if dir == "" {
		return fmt.Errorf("-model is required")
	}
	tok, err := model.LoadTokenizer(dir)
	if err != nil {
		return err
	}
	text, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	ids := tok.Encode(string(text))
	if ids == nil {
		ids = []int{}
	}
	return json.NewEncoder(os.Stdout).Encode(ids)
}
