// Command bench measures prefill and decode speed of a model on a backend, and decode bandwidth as a ratio
// to a limit measured on the same hardware in the same run:
//
//	go run ./cmd/bench -model DIR [-backend gpu|cpu] [-prompt-tokens N] [-gen-tokens N] [-matvec V] [-attention V] [-json]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

func main() {
	dir := flag.String("model", "", "model directory (converted or HF)")
	name := flag.String("backend", "gpu", backend.Names)
	prompt := flag.Int("prompt-tokens", 128, "tokens to prefill")
	gen := flag.Int("gen-tokens", 64, "tokens to decode")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	var k webgpu.Kernels
	flag.StringVar(&k.Matvec, "matvec", "", "force the GPU's matvec variant (default: autotuned): "+strings.Join(webgpu.MatvecVariants(), "|"))
	flag.StringVar(&k.Attention, "attention", "", "force the GPU's decode attention variant (default: autotuned): "+strings.Join(webgpu.AttentionVariants(), "|"))
	flag.Parse()
	if err := run(*dir, *name, *prompt, *gen, k, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(dir, name string, prompt, gen int, k webgpu.Kernels, asJSON bool) error {
	if dir == "" {
		return fmt.Errorf("-model is required")
	}
	m, err := model.Load(dir)
	if err != nil {
		return err
	}
	b, err := backend.OpenKernels(name, m, prompt+gen+1, k)
	if err != nil {
		return err
	}
	defer b.Close()
	r, err := backend.Bench(b, m, prompt, gen)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Printf("%s, %s, %d layers\n", r.Model, r.Backend, r.Layers)
	fmt.Printf("prefill  %8.1f tok/s (%d tokens)\n", r.PrefillTokPerSec, r.PromptTokens)
	fmt.Printf("decode   %8.1f tok/s (%d tokens), %.2f GB/s of weights (%d bytes/token)\n",
		r.DecodeTokPerSec, r.GenTokens, r.DecodeGBPerSec, r.WeightBytesPerToken)
	fmt.Printf("limit    %8.2f GB/s (%s): decode efficiency %.2f\n", r.LimitGBPerSec, r.LimitProbe, r.DecodeEfficiency)
	if r.Kernels != "" {
		fmt.Printf("kernels  %s; autotune %.0f ms %s\n", r.Kernels, r.TuneMillis, r.TuneTimes)
	}
	if r.DispatchesPerToken > 0 {
		fmt.Printf("per token %.0f dispatches, %.0f submits\n", r.DispatchesPerToken, r.SubmitsPerToken)
	}
	return nil
}
