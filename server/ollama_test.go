package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOllamaChatWire(t *testing.T) {
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	post := func(path, body string) *http.Response {
		resp, err := http.Post(fx.srv.URL+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	// Streaming is the default: NDJSON lines, the last one done with the counts.
	resp := post("/api/chat", `{"model": "internlm3-8b-instruct:latest", "messages": [{"role": "user", "content": "Hi"}], "options": {"num_predict": 5, "seed": 3}}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	var lines []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var v map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v), sc.Text())
		lines = append(lines, v)
	}
	last := lines[len(lines)-1]
	require.Equal(t, true, last["done"])
	require.Equal(t, "length", last["done_reason"])
	require.Equal(t, float64(5), last["eval_count"])
	for _, l := range lines[:len(lines)-1] {
		require.Equal(t, false, l["done"])
		require.Equal(t, "assistant", l["message"].(map[string]any)["role"])
	}

	for _, c := range []struct {
		path, body string
		status     int
		contains   string
	}{
		{"/api/chat", `{"model": "llama3", "messages": [{"role": "user", "content": "Hi"}]}`, 404, "model 'llama3' not found"},
		{"/api/chat", `{"messages": [{"role": "user", "content": "Hi"}], "format": {"type": "string", "pattern": "a"}}`, 400, "'format': JSON Schema keyword 'pattern'"},
		{"/api/chat", `{"messages": [{"role": "user", "content": "Hi"}], "format": "yaml"}`, 400, "'format'"},
		{"/api/chat", `{"messages": [{"role": "user", "content": "Hi", "images": ["aGk="]}]}`, 400, "images"},
		{"/api/generate", `{"model": "internlm3-8b-instruct"}`, 400, "'prompt'"},
		{"/api/show", `{"model": "gpt"}`, 404, "not found"},
	} {
		resp := post(c.path, c.body)
		var e struct{ Error string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		require.Equal(t, c.status, resp.StatusCode, c.body)
		require.Contains(t, e.Error, c.contains, c.body)
	}
}
