// Command bench measures prefill and decode speed of a model on a backend, and decode bandwidth as a ratio
// to a limit measured on the same hardware in the same run:
//
//	go run ./cmd/bench -model DIR [-backend gpu|cpu] [-prompt-tokens N] [-gen-tokens N] [-matvec V] [-attention V] [-matmul V]
//	                   [-kv-f16] [-positions P,P,…] [-json]
//
// -positions times decoding from each position instead (the long-context benchmark), as ratios to the first.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/webgpu"
)

func main() {
	dir := flag.String("model", "", "model directory (converted or HF)")
	name := flag.String("backend", "gpu", backend.Names)
	prompt := flag.Int("prompt-tokens", 128, "tokens to prefill")
	gen := flag.Int("gen-tokens", 64, "tokens to decode")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	positions := flag.String("positions", "", "comma-separated positions to time decoding at (e.g. 0,4096,16384,32768) instead of prefill+decode")
	var o webgpu.Options
	flag.BoolVar(&o.KVF16, "kv-f16", false, "keep the GPU's KV cache in f16")
	k := &o.Kernels
	flag.StringVar(&k.Matvec, "matvec", "", "force the GPU's matvec variant (default: autotuned): "+strings.Join(webgpu.MatvecVariants(), "|"))
	flag.StringVar(&k.Attention, "attention", "", "force the GPU's decode attention variant (default: autotuned): "+strings.Join(webgpu.AttentionVariants(), "|"))
	flag.StringVar(&k.Matmul, "matmul", "", "force the GPU's prefill matmul variant (default: autotuned): "+strings.Join(webgpu.MatmulVariants(), "|"))
	flag.DurationVar(&o.TuneBudget, "tune-budget", 0, "measure the autotune's candidates now, ignoring a stored choice, within this time (default: 2s, or the stored choice)")
	flag.Parse()
	var err error
	if *positions != "" {
		err = runPositions(*dir, *name, *positions, *gen, o, *asJSON)
	} else {
		err = run(*dir, *name, *prompt, *gen, o, *asJSON)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(dir, name string, prompt, gen int, o webgpu.Options, asJSON bool) error {
	if dir == "" {
		return fmt.Errorf("-model is required")
	}
	o.MaxContext = prompt + gen + 1
	m, b, err := backend.LoadWith(name, dir, o, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	r, err := backend.Bench(b, m, prompt, gen)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(r)
	}
	fmt.Printf("%s, %s, %d layers\n", r.Model, r.Backend, r.Layers)
	fmt.Printf("prefill  %8.1f tok/s (%d tokens)\n", r.PrefillTokPerSec, r.PromptTokens)
	fmt.Printf("decode   %8.1f tok/s (%d tokens), %.2f GB/s of weights (%d bytes/token)\n",
		r.DecodeTokPerSec, r.GenTokens, r.DecodeGBPerSec, r.WeightBytesPerToken)
	fmt.Printf("limit    %8.2f GB/s (%s): decode efficiency %.2f\n", r.LimitGBPerSec, r.LimitProbe, r.DecodeEfficiency)
	if r.Kernels != "" {
		fmt.Printf("kernels  %s; autotune %.0f ms (%s) %s\n", r.Kernels, r.TuneMillis, r.TuneClock, r.TuneTimes)
		if r.TuneRatios != "" {
			fmt.Printf("autotune candidates, weight bytes/s ÷ copy probe: %s\n", r.TuneRatios)
		}
		if r.TuneSkipped != "" {
			fmt.Printf("autotune skipped, its budget spent: %s\n", r.TuneSkipped)
		}
	}
	if r.DispatchesPerToken > 0 {
		fmt.Printf("per token %.0f dispatches, %.0f submits\n", r.DispatchesPerToken, r.SubmitsPerToken)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runPositions prints decode speed at each of the comma-separated positions, gen tokens each.
func runPositions(dir, name, list string, gen int, o webgpu.Options, asJSON bool) error {
	if dir == "" {
		return fmt.Errorf("-model is required")
	}
	var positions []int
	for _, f := range strings.Split(list, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("-positions: %q is not a position", f)
		}
		positions = append(positions, p)
	}
	o.MaxContext = slices.Max(positions) + gen + 2
	m, b, err := backend.LoadWith(name, dir, o, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	speeds, err := backend.DecodeAt(b, positions, gen)
	if err != nil {
		return err
	}
	kernels := ""
	if e, ok := b.Decoder.(*webgpu.Engine); ok {
		kernels = e.Tuning().String()
	}
	if asJSON {
		return printJSON(map[string]any{"backend": b.Name, "kernels": kernels, "kv_f16": o.KVF16, "speeds": speeds})
	}
	fmt.Printf("%s, %s, kv f16 %v, kernels %s\n", m.Dir, b.Name, o.KVF16, kernels)
	for _, s := range speeds {
		fmt.Printf("position %6d  %8.3f tok/s  %.2f of position %d\n", s.Position, s.TokPerSec, s.RatioToPos, positions[0])
	}
	return nil
}
