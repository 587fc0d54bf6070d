package server

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// clientModules is where make installs the pinned clients of server/clients/package-lock.json.
const clientModules = "../.cache/clients-npm/node_modules"

// The official openai and ollama npm clients against the API (behind the same Guard as cmd/serve):
// tools and the tool_calls round trip, streamed calls, structured output, Ollama's chat, generate, tags,
// show and version. Every constrained answer must validate against its schema. Without Node.js or the
// clients the test skips, except under CI, where it fails.
func TestOfficialClients(t *testing.T) {
	node, err := exec.LookPath("node")
	modules, _ := filepath.Abs(clientModules)
	if _, serr := os.Stat(modules); err != nil || serr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("need node and %s (make test-deps installs them)", clientModules)
		}
		t.Skipf("need node and %s (make test-deps installs them)", clientModules)
	}
	fx := newAPIFixture(t, APIConfig{}, 0, false)
	srv := httptest.NewServer(Guard(fx.api, GuardConfig{Addr: "127.0.0.1:0", CheckOrigin: true}))
	defer srv.Close()

	dir := t.TempDir()
	script, err := os.ReadFile("clients/clients.mjs")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "clients.mjs"), script, 0o644))
	require.NoError(t, os.Symlink(modules, filepath.Join(dir, "node_modules")))
	schema := `{"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}, "days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}, "maxItems": 3}}, "required": ["city", "days"], "additionalProperties": false}`
	cmd := exec.Command(node, filepath.Join(dir, "clients.mjs"))
	cmd.Env = append(os.Environ(), "ILMWEB_URL="+srv.URL, "ILMWEB_TOOLS="+weatherTools, "ILMWEB_SCHEMA="+schema)
	stdout, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("clients.mjs: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)

	var out struct {
		Calls, StreamedCalls       []toolCallJSON
		SchemaAnswers, JSONAnswers []string
	}
	require.NoError(t, json.Unmarshal(stdout, &out), string(stdout))
	params := map[string]string{}
	for _, tl := range tools(t) {
		params[tl.Function.Name] = string(tl.Function.Parameters)
	}
	require.Len(t, out.Calls, 1)
	require.Len(t, out.StreamedCalls, 1)
	require.Equal(t, "add", out.StreamedCalls[0].Function.Name)
	for _, c := range append(out.Calls, out.StreamedCalls...) {
		require.Contains(t, params, c.Function.Name)
		validates(t, validator(t, params[c.Function.Name]), c.Function.Arguments, c.Function.Arguments)
	}
	require.Len(t, out.SchemaAnswers, 6)
	for _, a := range out.SchemaAnswers {
		validates(t, validator(t, schema), a, a)
	}
	require.Len(t, out.JSONAnswers, 2)
	for _, a := range out.JSONAnswers {
		validates(t, validator(t, `{"type": "object"}`), a, a)
	}
}
