package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

// Report is what cmd/bench prints: speeds, and decode bandwidth as a ratio to a limit measured on the same
// hardware in the same run (the copy-shader probe on a GPU, the all-core read loop on the CPU).
type Report struct {
	Date                string  `json:"date"`
	Model               string  `json:"model"`
	Backend             string  `json:"backend"`
	Layers              int     `json:"layers"`
	PromptTokens        int     `json:"prompt_tokens"`
	GenTokens           int     `json:"gen_tokens"`
	PrefillTokPerSec    float64 `json:"prefill_tok_s"`
	DecodeTokPerSec     float64 `json:"decode_tok_s"`
	WeightBytesPerToken int64   `json:"weight_bytes_per_token"`
	DecodeGBPerSec      float64 `json:"decode_gb_s"`
	LimitGBPerSec       float64 `json:"limit_gb_s"`
	LimitProbe          string  `json:"limit_probe"`
	DecodeEfficiency    float64 `json:"decode_efficiency"` // DecodeGBPerSec / LimitGBPerSec
	DispatchesPerToken  float64 `json:"dispatches_per_token,omitempty"`
	SubmitsPerToken     float64 `json:"submits_per_token,omitempty"`
	Kernels             string  `json:"kernels,omitempty"`      // the GPU engine's variants and how they were chosen
	TuneMillis          float64 `json:"tune_ms,omitempty"`      // the autotune's time at load
	TuneTimes           string  `json:"tune_times,omitempty"`   // its candidates' best times
	TuneRatios          string  `json:"tune_ratios,omitempty"`  // its candidates' weight bytes/s ÷ the copy probe
	TuneSkipped         string  `json:"tune_skipped,omitempty"` // candidates left unmeasured once its budget was spent
	TuneClock           string  `json:"tune_clock,omitempty"`   // what timed them
}

// Bench prefills promptTokens random tokens, then decodes genTokens greedily, timing each phase.
func Bench(b *Backend, m *model.Model, promptTokens, genTokens int) (*Report, error) {
	if promptTokens < 1 || genTokens < 1 || promptTokens+genTokens > b.MaxContext() {
		return nil, fmt.Errorf("bench: %d prompt + %d generated tokens must be ≥ 1 each and fit the context of %d",
			promptTokens, genTokens, b.MaxContext())
	}
	r := &Report{
		Date: time.Now().UTC().Format(time.RFC3339), Model: m.Dir, Backend: b.Name, Layers: m.Config.NumHiddenLayers,
		PromptTokens: promptTokens, GenTokens: genTokens, WeightBytesPerToken: b.WeightBytesPerToken,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := make([]int, promptTokens)
	for i := range prompt {
		prompt[i] = rng.IntN(m.Tokenizer.VocabSize()) // ids the tokenizer can produce
	}
	if e, ok := b.Decoder.(*webgpu.Engine); ok {
		t := e.Tuning()
		r.Kernels, r.TuneMillis, r.TuneTimes = t.String(), float64(t.Took.Microseconds())/1000, fmt.Sprint(t.Times)
		r.TuneSkipped, r.TuneClock = strings.Join(t.Skipped, ", "), t.Clock
	}
	session := model.NewSession(b, m.Config)
	var first time.Time
	start := time.Now()
	res, err := session.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: genTokens + 1, Sampling: model.Greedy()},
		func(int) error {
			if first.IsZero() {
				first = time.Now() // the prompt is in: the first token costs one prefill
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	end := time.Now()
	r.PrefillTokPerSec = float64(promptTokens) / first.Sub(start).Seconds()
	r.DecodeTokPerSec = float64(len(res.Tokens)-1) / end.Sub(first).Seconds()
	r.DecodeGBPerSec = float64(r.WeightBytesPerToken) * r.DecodeTokPerSec / 1e9
	if err := b.limit(r); err != nil {
		return nil, err
	}
	r.DecodeEfficiency = r.DecodeGBPerSec / r.LimitGBPerSec
	return r, nil
}

// limit measures the bandwidth decoding is compared against, on the backend's own hardware.
func (b *Backend) limit(r *Report) error {
	if b.Device == nil {
		r.LimitGBPerSec = model.ReadBandwidth()
		r.LimitProbe = fmt.Sprintf("CPU read of 1 GiB on %d cores", runtime.GOMAXPROCS(0))
		return nil
	}
	return b.gpuLimit(r)
}

// gpuLimit measures the copy-shader bandwidth of the adapter the engine runs on (bytes read plus written per
// second over a 256 MiB buffer, or the largest the device allows) and reads the engine's dispatch counts.
func (b *Backend) gpuLimit(r *Report) error {
	size := min(uint64(256<<20), b.Device.Limits.MaxStorageBufferBindingSize, b.Device.Limits.MaxBufferSize)
	gbps, err := b.Device.CopyBandwidth(size)
	if err != nil {
		return err
	}
	r.LimitGBPerSec = gbps
	r.LimitProbe = fmt.Sprintf("WGSL copy of %d MiB, read+write", size>>20)
	if e, ok := b.Decoder.(*webgpu.Engine); ok {
		d := e.Stats().Decode
		r.DispatchesPerToken, r.SubmitsPerToken = d.DispatchesPerToken(), d.SubmitsPerToken()
		r.TuneRatios = e.Tuning().Ratios(gbps)
	}
	return nil
}
