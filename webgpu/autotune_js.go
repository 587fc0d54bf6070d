//go:build js

package webgpu

import (
	"encoding/json"
	"syscall/js"

	"github.com/oliverbestmann/webgpu/jsx"
)

// The autotune's choices in the browser: one entry per key in the Cache API's "ilmweb-autotune" cache,
// which a Web Worker (where the engine runs) can reach, unlike localStorage.
const tuningCache = "ilmweb-autotune"

// tuningRequest is the cache entry's URL for key, under the page's origin.
func tuningRequest(key string) string {
	return "/ilmweb-autotune/" + js.Global().Call("encodeURIComponent", key).String()
}

func openTuningCache() (js.Value, bool) {
	caches := js.Global().Get("caches")
	if !caches.Truthy() {
		return js.Value{}, false
	}
	c, ok := jsx.Await(caches.Call("open", tuningCache))
	return c, ok && c.Truthy()
}

func loadTuning(key string) (Kernels, bool) {
	c, ok := openTuningCache()
	if !ok {
		return Kernels{}, false
	}
	resp, ok := jsx.Await(c.Call("match", tuningRequest(key)))
	if !ok || !resp.Truthy() {
		return Kernels{}, false
	}
	text, ok := jsx.Await(resp.Call("text"))
	var k Kernels
	if !ok || json.Unmarshal([]byte(text.String()), &k) != nil {
		return Kernels{}, false
	}
	return k, true
}

func saveTuning(key string, k Kernels) {
	c, ok := openTuningCache()
	if !ok {
		return
	}
	raw, err := json.Marshal(k)
	if err != nil {
		return
	}
	resp := js.Global().Get("Response").New(string(raw), map[string]any{"headers": map[string]any{"content-type": "application/json"}})
	jsx.Await(c.Call("put", tuningRequest(key), resp)) // best effort, as natively
}
