// Package cmd_test runs the command-line tools as a user would and checks their output contracts
// (DESIGN.md "CLI contracts") against the library.
package cmd_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/synth"
)

var binDir, tinyDir string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "cmd-test-")
	if err != nil {
		panic(err)
	}
	binDir, tinyDir = filepath.Join(tmp, "bin"), filepath.Join(tmp, "tiny")
	out, err := exec.Command("go", "build", "-o", binDir+"/", "./logits", "./tokenize", "./chat").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	if err := synth.Write(synth.Presets["tiny"], tinyDir, 1); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func run(t *testing.T, stdin string, name string, args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func TestTokenize(t *testing.T) {
	text := "Hello, 世界! <|im_end|>\n\tcode()"
	out, _, err := run(t, text, "tokenize", "-model", tinyDir)
	require.NoError(t, err)
	var ids []int
	require.NoError(t, json.Unmarshal([]byte(out), &ids))
	tok, err := model.LoadTokenizer(tinyDir)
	require.NoError(t, err)
	require.Equal(t, tok.Encode(text), ids)
	require.Equal(t, text, tok.Decode(ids))
}

func TestLogits(t *testing.T) {
	out, _, err := run(t, "", "logits", "-model", tinyDir, "-tokens", "1,3,100,200")
	require.NoError(t, err)
	var got struct{ Logits [][]float32 }
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	m, err := model.Load(tinyDir)
	require.NoError(t, err)
	want, err := model.NewCPU(m.Config, m.Weights, 4).Forward([]int{1, 3, 100, 200}, 0, true)
	require.NoError(t, err)
	require.Equal(t, want, got.Logits)
}

func TestChatPromptGreedy(t *testing.T) {
	out, errOut, err := run(t, "", "chat", "-model", tinyDir, "-prompt", "Hi", "-temperature", "0", "-repetition-penalty", "1", "-max-tokens", "12")
	require.NoError(t, err)
	require.Empty(t, errOut, "nothing on stderr when it is not a terminal")

	m, err := model.Load(tinyDir)
	require.NoError(t, err)
	prompt := m.Chat.Encode(model.WithSystemPrompt([]model.Message{{Role: "user", Content: "Hi"}}, false), true)
	res, err := model.NewSession(model.NewCPU(m.Config, m.Weights, 4096), m.Config).Generate(context.Background(), prompt,
		model.GenerateOptions{MaxTokens: 12, Stop: m.Stop, Sampling: model.Greedy()}, func(int) error { return nil })
	require.NoError(t, err)
	require.Equal(t, m.Tokenizer.Decode(res.Tokens)+"\n", out)
}

func TestChatInteractiveTurns(t *testing.T) {
	out, _, err := run(t, "first question\n\nsecond question\n", "chat", "-model", tinyDir, "-temperature", "0", "-max-tokens", "4")
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(out, "> "), "a prompt at the start and after each of the three input lines: %q", out)
	require.Equal(t, 2, strings.Count(out, "\n> "), "two answers, each ended by a newline: %q", out)
}

func TestErrorsAreOneLine(t *testing.T) {
	cases := [][]string{
		{"logits", "-tokens", "1"},
		{"logits", "-model", tinyDir, "-tokens", "1,x"},
		{"logits", "-model", tinyDir, "-tokens", "99999"},
		{"logits", "-model", filepath.Join(tinyDir, "nope"), "-tokens", "1"},
		{"tokenize", "-model", filepath.Join(tinyDir, "nope")},
		{"chat", "-model", tinyDir, "-backend", "tpu", "-prompt", "x"},
	}
	for _, args := range cases {
		_, stderr, err := run(t, "", args[0], args[1:]...)
		require.Error(t, err, args)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "%v: %q", args, stderr)
	}
}
