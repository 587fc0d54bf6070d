// Command logits prints the model's logits for a token sequence, one row per position:
//
//	go run ./cmd/logits -model DIR -tokens 1,2,3 [-backend cpu|gpu]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ilmweb/ilmweb/backend"
)

func main() {
	dir := flag.String("model", "", "model directory")
	tokens := flag.String("tokens", "", "comma-separated token ids")
	backendName := flag.String("backend", "cpu", backend.Names)
	flag.Parse()
	if err := run(*dir, *tokens, *backendName); err != nil {
		fmt.Fprintln(os.Stderr, "logits:", err)
		os.Exit(1)
	}
}

func run(dir, tokenList, backendName string) error {
	if dir == "" || tokenList == "" {
		return fmt.Errorf("-model and -tokens are required")
	}
	var ids []int
	for _, s := range strings.Split(tokenList, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-tokens: %q is not a token id", s)
		}
		ids = append(ids, id)
	}
	_, b, err := backend.Load(backendName, dir, len(ids), nil)
	if err != nil {
		return err
	}
	defer b.Close()
	logits, err := b.Forward(ids, 0, true)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	if err := json.NewEncoder(w).Encode(map[string][][]float32{"logits": logits}); err != nil {
		return err
	}
	return w.Flush()
}
