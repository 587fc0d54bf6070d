// Command chat talks with the model in the terminal, streaming the answer as it is generated.
//
//	go run ./cmd/chat -model DIR [-backend cpu|gpu] [-prompt TEXT] [-think] [-temperature F] [-seed N] [-max-tokens N] [-v]
//
// Without -prompt it reads one user message per line until end of input; Ctrl-C stops the current answer.
// On a terminal, stderr shows the load's and the prompt's progress and what was loaded; -v adds a line of
// statistics per answer (and prints the load's line even when stderr is not a terminal).
package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/model"
)

type options struct {
	dir, backend, prompt, system string
	think, verbose               bool
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
	flag.BoolVar(&o.verbose, "v", false, "statistics on stderr: the load's time and memory, each answer's prefill, first-token and decode speed")
	flag.Parse()
	st := &status{w: os.Stderr, tty: term.IsTerminal(int(os.Stderr.Fd())), verbose: o.verbose}
	if err := run(o, os.Stdin, os.Stdout, st); err != nil {
		st.clear()
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

func run(o options, in io.Reader, out io.Writer, st *status) error {
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
	st.progress("loading %s…", o.dir)
	loadStart := time.Now()
	m, b, err := backend.Load(o.backend, o.dir, o.ctxLen, func(done, total int64) {
		st.progress("loading %s: %d%% (%s of %s)", o.dir, 100*done/total, backend.GB(done), backend.GB(total))
	})
	if err != nil {
		return err
	}
	defer b.Close()
	st.stats(true, "loaded %s in %.1f s on %s · %s", o.dir, time.Since(loadStart).Seconds(), b.Name, b.Memory())
	ctxLen := b.MaxContext()
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
		start := time.Now()
		var first time.Time
		opt := model.GenerateOptions{MaxTokens: o.maxTokens, Stop: m.Stop, Sampling: o.sampling,
			Prefill: func(done, total int) { st.progress("prompt: %d of %d tokens", done, total) }}
		res, err := session.Generate(ctx, ids, opt,
			func(id int) error {
				if first.IsZero() {
					first = time.Now()
					st.clear()
				}
				s := dec.Add(id)
				reply.WriteString(s)
				_, err := io.WriteString(out, s)
				return err
			})
		end := time.Now()
		st.clear()
		s := dec.Flush()
		reply.WriteString(s)
		fmt.Fprintln(out, s)
		if first.IsZero() {
			first = end // stopped before the first token
		}
		prefill, decode := first.Sub(start).Seconds(), end.Sub(first).Seconds()
		st.stats(false, "[prompt %d tokens, %d run: first token after %.2f s (%s) · %d tokens in %.2f s (%s) · %s]",
			res.PromptTokens, res.Prefilled, prefill, perSecond(res.Prefilled, prefill),
			len(res.Tokens), decode, perSecond(len(res.Tokens)-1, decode), cmp.Or(res.FinishReason, "stopped"))
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

// perSecond is a speed for the statistics line: n tokens in seconds.
func perSecond(n int, seconds float64) string {
	if n <= 0 || seconds <= 0 {
		return "- tok/s"
	}
	return fmt.Sprintf("%.1f tok/s", float64(n)/seconds)
}

// status is what chat says on stderr besides the answer: progress on a terminal, rewritten in place and
// erased when done, and lines of statistics. Without a terminal and without -v it says nothing.
type status struct {
	w            io.Writer
	tty, verbose bool
	shown        bool // a progress line is on the terminal
}

// progress shows a line of progress in place of the last one, on a terminal only.
func (s *status) progress(format string, args ...any) {
	if s.tty {
		fmt.Fprintf(s.w, "\r\x1b[K"+format, args...)
		s.shown = true
	}
}

// clear erases the progress line.
func (s *status) clear() {
	if s.shown {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.shown = false
	}
}

// stats prints a line of statistics with -v, and on a terminal too when onTerminal is set.
func (s *status) stats(onTerminal bool, format string, args ...any) {
	if s.verbose || (onTerminal && s.tty) {
		s.clear()
		fmt.Fprintf(s.w, format+"\n", args...)
	}
}
