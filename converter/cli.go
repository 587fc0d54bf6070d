package converter

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
)

const usage = `usage: convert [-quant q4|q8|f16|f32] [-group 32] [-shard-size 64MiB] [-lm-head DTYPE] [-force] [-q] [-cache DIR] SRC DST
       convert -verify [-q] DST
SRC is a Hugging Face checkpoint directory or a hub id owner/name. Flags go before SRC.`

// Main is cmd/convert. It returns the exit status: 0 on success, 1 on error (one line on stderr), 2 on a
// usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	quant := fs.String("quant", "q4", "dtype of the 2-D weights: q4, q8, f16 or f32")
	group := fs.Int("group", 32, "columns per f16 scale of q4/q8 weights (a multiple of 8)")
	shardSize := fs.String("shard-size", "64MiB", "largest shard: bytes, or with a K/KiB, M/MiB or G/GiB suffix")
	lmHead := fs.String("lm-head", "", "dtype of lm_head.weight (default: -quant)")
	force := fs.Bool("force", false, "replace a non-empty DST once the conversion has succeeded")
	quiet := fs.Bool("q", false, "print nothing but errors")
	cache := fs.String("cache", "", "download directory for hub ids (default $ILMWEB_CACHE or the user cache dir)")
	verify := fs.Bool("verify", false, "re-hash every file of the converted dir DST against its manifest")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "convert:", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	progress := newProgress(stderr, *quiet)

	if *verify {
		if fs.NArg() != 1 {
			fs.Usage()
			return 2
		}
		man, err := Verify(ctx, fs.Arg(0), func(done, total int64) { progress.update("verify", done, total) })
		progress.finish(err == nil)
		if err != nil {
			return fail(err)
		}
		if !*quiet {
			fmt.Fprintf(stdout, "%s: ok, %d files and %d shards match the manifest\n", fs.Arg(0), len(man.Files), len(man.Shards))
		}
		return 0
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	size, err := parseSize(*shardSize)
	if err != nil {
		fmt.Fprintln(stderr, "convert: -shard-size:", err)
		return 2
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	start := time.Now()
	man, err := Convert(ctx, src, dst, Options{
		Quant: *quant, LMHead: *lmHead, Group: *group, ShardSize: size, Force: *force, CacheDir: *cache,
		Progress: progress.update,
	})
	progress.finish(err == nil)
	if err != nil {
		return fail(err)
	}
	if *quiet {
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tdtype\tshape\tparts\trel_rmse\tmax_abs")
	var params int64
	worst := &man.Tensors[0]
	for i := range man.Tensors {
		t := &man.Tensors[i]
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%.5f\t%.3g\n", t.Name, t.DType, t.Shape, len(t.Parts), t.Error.RelRMSE, t.Error.MaxAbs)
		params += int64(t.Rows()) * int64(t.Cols())
		if t.Error.RelRMSE > worst.Error.RelRMSE {
			worst = t
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "wrote %s in %s: %d tensors, %d parameters, %d shards, %d bytes (%.3f bits/parameter); worst rel_rmse %.5f (%s)\n",
		dst, time.Since(start).Round(time.Second), len(man.Tensors), params, len(man.Shards), man.TotalBytes,
		8*float64(man.TotalBytes)/float64(params), worst.Error.RelRMSE, worst.Name)
	return 0
}

// parseSize reads a byte count: a plain number, or one with a binary K/KiB, M/MiB or G/GiB suffix.
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size like 64MiB", s)
	}
	return n * mult, nil
}

// progress shows progress on w: a bar (bytes, rate, ETA) when w is a terminal, otherwise a plain line
// every 10 seconds and one when a stage completes. Stages are "download", "convert" and "verify".
type progress struct {
	w        io.Writer
	quiet    bool
	terminal bool

	mu          sync.Mutex
	stage       string
	bar         *progressbar.ProgressBar
	start, last time.Time
	done, total int64
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		st, err := f.Stat()
		p.terminal = err == nil && st.Mode()&os.ModeCharDevice != 0
	}
	return p
}

// update reports done of total bytes in stage (total is -1 when unknown).
func (p *progress) update(stage string, done, total int64) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if stage != p.stage {
		p.end(true)
		p.stage, p.start, p.last = stage, time.Now(), time.Now()
		if p.terminal {
			p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(stage),
				progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionFullWidth(),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }))
		}
	}
	p.done, p.total = done, total
	if p.bar != nil {
		p.bar.Set64(done)
	} else if time.Since(p.last) >= 10*time.Second {
		p.last = time.Now()
		p.line()
	}
}

// finish ends the current stage: with a last line if it completed, just a line break after a bar if not.
func (p *progress) finish(ok bool) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.end(ok)
	p.stage = ""
}

func (p *progress) end(ok bool) {
	switch {
	case p.bar != nil:
		p.bar.Exit()
		p.bar = nil
	case p.stage != "" && ok:
		p.line()
	}
}

func (p *progress) line() {
	rate := float64(p.done) / max(time.Since(p.start).Seconds(), 1e-3)
	msg := fmt.Sprintf("%s: %s", p.stage, human(p.done))
	if p.total > 0 {
		eta := time.Duration(float64(p.total-p.done)/max(rate, 1)) * time.Second
		msg += fmt.Sprintf(" / %s (%.0f%%), ETA %s", human(p.total), 100*float64(p.done)/float64(p.total), eta.Round(time.Second))
	}
	fmt.Fprintf(p.w, "%s, %s/s\n", msg, human(int64(rate)))
}

// human formats a byte count with a binary unit.
func human(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v, i = v/1024, i+1
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
