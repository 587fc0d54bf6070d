// Command chat talks with the model in the terminal, streaming the answer as it is generated.
//
//	go run ./cmd/chat -model DIR [-backend cpu|gpu] [-prompt TEXT] [-think] [-temperature F] [-seed N] [-max-tokens N]
//
// Without -prompt it reads one user message per line until end of input; Ctrl-C stops the current answer.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/model"
)

type options struct {
	dir, backend, prompt, system string
	think                        bool
	maxTokens, ctxLen            int
	sampling                     model.SamplingParams
	seed                         int64
}

func main() {
	def := model.DefaultSampling()
	var o options
	flag.StringVar(&o.dir, "model", "", "model directory")
	flag.StringVar(&o.backend, "backend", "cpu", backend.Names)
	flag.StringVar(&o.prompt, "prompt", "", "answer this one message and exit")
	flag.StringVar(&o.system, "system", "", "system prompt (default: the official one for the mode)")
	flag.BoolVar(&o.think, "think", false, "deep-thinking mode: the thinking system prompt and 8192 new tokens")
	flag.Float64Var(&o.sampling.Temperature, "temperature", def.Temperature, "sampling temperature; 0 is greedy")
	flag.IntVar(&o.sampling.TopK, "top-k", def.TopK, "keep the k most likely tokens; 0 disables")
	flag.Float64Var(&o.sampling.TopP, "top-p", def.TopP, "nucleus sampling mass; 1 disables")
	flag.Float64Var(&o.sampling.RepetitionPenalty, "repetition-penalty", def.RepetitionPenalty, "HF repetition penalty; 1 disables")
	flag.Int64Var(&o.seed, "seed", -1, "random seed for reproducible sampling (-1: from the clock)")
	flag.IntVar(&o.maxTokens, "max-tokens", 0, "new tokens per answer (default 1024, or 8192 with -think)")
	flag.IntVar(&o.ctxLen, "ctx", 4096, "context length in tokens")
	flag.Parse()
	if err := run(o, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func run(o options, in io.Reader, out io.Writer) error {
	if o.dir == "" {
		return fmt.Errorf("-model is required")
	}
	if o.maxTokens == 0 {
		o.maxTokens = 1024
		if o.think {
			o.maxTokens = 8192
		}
	}
	o.sampling.Seed = uint64(o.seed)
	if o.seed < 0 {
		o.sampling.Seed = uint64(time.Now().UnixNano())
	}
	m, err := model.Load(o.dir)
	if err != nil {
		return err
	}
	ctxLen := min(o.ctxLen, m.Config.ContextLimit())
	b, err := backend.Open(o.backend, m, ctxLen)
	if err != nil {
		return err
	}
	defer b.Close()
	session := model.NewSession(b, m.Config)
	var history []model.Message
	if o.system != "" {
		history = []model.Message{{Role: "system", Content: o.system}}
	}
	history = model.WithSystemPrompt(history, o.think)

	answer := func(text string) error {
		history = append(history, model.Message{Role: "user", Content: text})
		kept, ids, err := m.Chat.Fit(history, ctxLen, min(o.maxTokens, ctxLen/2))
		if err != nil {
			return err
		}
		history = kept
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		dec := m.Tokenizer.NewStreamDecoder()
		var reply strings.Builder
		_, err = session.Generate(ctx, ids, model.GenerateOptions{MaxTokens: o.maxTokens, Stop: m.Stop, Sampling: o.sampling},
			func(id int) error {
				s := dec.Add(id)
				reply.WriteString(s)
				_, err := io.WriteString(out, s)
				return err
			})
		s := dec.Flush()
		reply.WriteString(s)
		fmt.Fprintln(out, s)
		history = append(history, model.Message{Role: "assistant", Content: reply.String()})
		if ctx.Err() != nil {
			fmt.Fprintln(out, "[stopped]")
			return nil
		}
		return err
	}

	if o.prompt != "" {
		return answer(o.prompt)
	}
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	fmt.Fprint(out, "> ")
	for lines.Scan() {
		if text := strings.TrimSpace(lines.Text()); text != "" {
			if err := answer(text); err != nil {
				return err
			}
		}
		fmt.Fprint(out, "> ")
	}
	return lines.Err()
}
