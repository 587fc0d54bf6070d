// Command synth writes a random-weight InternLM3 checkpoint in the Hugging Face layout.
//
//	go run ./cmd/synth -preset tiny|internlm3-8b -out DIR [-layers N] [-seed N]
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/ilmweb/ilmweb/synth"
)

func main() {
	preset := flag.String("preset", "tiny", "model shape: "+strings.Join(presetNames(), ", "))
	out := flag.String("out", "", "output directory (must not exist or be empty)")
	layers := flag.Int("layers", 0, "number of decoder layers (0: the preset's)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	p, ok := synth.Presets[*preset]
	if !ok || *out == "" || *layers < 0 {
		fmt.Fprintf(os.Stderr, "usage: synth -preset %s -out DIR [-layers N] [-seed N]\n", strings.Join(presetNames(), "|"))
		os.Exit(2)
	}
	if *layers > 0 {
		p.Layers = *layers
	}
	if err := synth.Write(p, *out, *seed); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func presetNames() []string {
	var names []string
	for n := range synth.Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
