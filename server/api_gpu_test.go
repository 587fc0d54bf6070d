package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/webgpu"
)

// The API on the WebGPU engine answers greedy requests exactly as the CPU reference does.
func TestAPIOnGPU(t *testing.T) {
	m := tinyModel(t)
	var name string
	api, err := NewAPI(APIConfig{Model: m, ContextLen: testCtx, NewDecoder: func(m *model.Model, ctxLen int) (model.Decoder, error) {
		b, err := backend.Open("gpu", m, ctxLen)
		if err != nil {
			return nil, err
		}
		name = b.Name
		t.Cleanup(b.Close)
		return b, nil
	}})
	if errors.Is(err, webgpu.ErrNoAdapter) && os.Getenv("REQUIRE_GPU") != "1" {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Logf("engine: %s", name)
	srv := httptest.NewServer(api)
	defer srv.Close()

	messages := []model.Message{{Role: "user", Content: "Tell me about the sea."}}
	want, _ := sessionAnswer(t, m, messages, 24, model.Greedy())
	body := `{"messages": [{"role": "user", "content": "Tell me about the sea."}], "temperature": 0, "repetition_penalty": 1, "max_tokens": 24}`
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got completionJSON
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, want, got.Choices[0].Message.Content)
}
