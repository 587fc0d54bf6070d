package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
)

// What chat writes to stderr: progress on a terminal, statistics with -v, nothing when piped without -v;
// the answer on stdout is the same in every case.
func TestStatus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	require.NoError(t, synth.Write(synth.Presets["tiny"], dir, 1))
	chat := func(tty, verbose bool) (stdout, stderr string) {
		o := options{dir: dir, backend: "cpu", prompt: "Hi", maxTokens: 6, ctxLen: 4096, sampling: model.Greedy(), verbose: verbose}
		var out, errOut strings.Builder
		require.NoError(t, run(o, strings.NewReader(""), &out, &status{w: &errOut, tty: tty, verbose: verbose}))
		return out.String(), errOut.String()
	}
	answer, piped := chat(false, false)
	require.NotEmpty(t, strings.TrimSpace(answer))
	require.Empty(t, piped, "nothing but the answer when piped")

	out, term := chat(true, false)
	require.Equal(t, answer, out)
	require.Contains(t, term, "\r\x1b[Kloading "+dir+"…")
	require.Regexp(t, `\r\x1b\[Kprompt: (\d+) of \d+ tokens`, term)
	require.Regexp(t, `\r\x1b\[Kloaded `+regexp.QuoteMeta(dir)+` in \d+\.\d s on cpu · weights [\d.]+ [kMG]B read per token, in host memory\n`, term)
	require.True(t, strings.HasSuffix(term, "\r\x1b[K"), "the last progress line is erased: %q", term)
	require.NotContains(t, term, "[prompt", "statistics only with -v")

	out, stats := chat(false, true)
	require.Equal(t, answer, out)
	require.NotContains(t, stats, "\r", "no progress without a terminal")
	lines := strings.Split(strings.TrimSuffix(stats, "\n"), "\n")
	require.Len(t, lines, 2, "%q", stats)
	require.Regexp(t, `^loaded .* on cpu · `, lines[0])
	require.Regexp(t, `^\[prompt (\d+) tokens, (\d+) run: first token after [\d.]+ s \([\d.]+ tok/s\) · 6 tokens in [\d.]+ s \([\d.]+ tok/s\) · length\]$`, lines[1])
}
