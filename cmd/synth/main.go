// Command synth writes a random-weight InternLM3 checkpoint in the Hugging Face layout.
//
//	go run ./cmd/synth -preset tiny|internlm3-8b -out DIR [-layers N] [-max-position N] [-seed N]
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
	maxPos := flag.Int("max-position", 0, "max_position_embeddings (0: the preset's; tiny's 128 puts every chat past it, in dynamic NTK)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	p, ok := synth.Presets[*preset]
	if !ok || *out == "" || *layers < 0 || *maxPos < 0 {
		fmt.Fprintf(os.Stderr, "usage: synth -preset %s -out DIR [-layers N] [-max-position N] [-seed N]\n", strings.Join(presetNames(), "|"))
		os.Exit(2)
	}
	if *layers > 0 {
		p.Layers = *layers
	}
	if *maxPos > 0 {
		p.MaxPositionEmbeddings = *maxPos
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
