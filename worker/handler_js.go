//go:build js && wasm

package worker

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall/js"
	"time"

	"github.com/syumai/workers/cloudflare"
	"github.com/syumai/workers/cloudflare/cache"

	"github.com/ilmweb/ilmweb/webfiles"
)

// Handler serves the bucket bound as Name (Binding when empty). workers.Serve runs it once per request,
// in a fresh instance of the wasm module, so it keeps nothing between requests: the edge cache does.
//
// Bodies never pass through Go: R2's and the cache's ReadableStreams are handed to the Response as they
// are (the library's raw-body path), so a 64 MiB shard costs the worker a few JS calls, not a copy.
//
//   - GET of a shard (immutable): the edge cache (Cache API) first, Range included (the cache answers
//     206 itself); on a miss, R2, with the body teed into the cache for the next request.
//   - Everything else, and shards' HEAD, If-Range and multi-range requests: R2. A plain GET is one R2 get;
//     a conditional, ranged or HEAD request reads the metadata first (R2 head), decides (Decide), and then
//     reads only the bytes it sends: R2 get with {range: {offset, length}}, which syumai/workers' r2.Bucket
//     does not offer (its Get takes no options), so it goes through syscall/js.
type Handler struct {
	Name string
}

var _ http.Handler = Handler{}

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := w.Header()
	out.Set("X-Content-Type-Options", "nosniff")
	key, model, status := Resolve(r.URL.Path)
	if model {
		webfiles.SetCORS(out)
		if r.Method == http.MethodOptions { // CORS preflight (a Range request from another origin may need one)
			webfiles.SetPreflight(out)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		out.Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed)
		return
	}
	if status != 0 {
		httpError(w, status)
		return
	}
	name := h.Name
	if name == "" {
		name = Binding
	}
	bucket := cloudflare.GetBinding(name)
	if bucket.IsUndefined() {
		fmt.Printf("ilmweb worker: no R2 binding %q (wrangler.toml's [[r2_buckets]] binding)\n", name)
		httpError(w, http.StatusInternalServerError)
		return
	}
	req := joinHeader(r.Header)
	if r.Method == http.MethodGet && webfiles.IsShard(key) && req.Get("If-Range") == "" && !strings.Contains(req.Get("Range"), ",") {
		if serveCached(w, r, req) {
			return
		}
		out.Set("X-Edge-Cache", "MISS")
	}
	if err := serveObject(w, r, req, bucket, key, model); err != nil {
		fmt.Printf("ilmweb worker: %s %s: %v\n", r.Method, r.URL.Path, err)
		resetHeaders(out)
		httpError(w, http.StatusInternalServerError)
	}
}

// serveObject answers from R2.
func serveObject(w http.ResponseWriter, r *http.Request, req http.Header, bucket js.Value, key string, model bool) error {
	out := w.Header()
	// A plain GET needs the object's body whatever its metadata says: one R2 get. Anything else may end
	// without a body (304, 416, HEAD) or with part of one: R2 head first.
	metaFirst := r.Method == http.MethodHead || req.Get("Range") != "" || req.Get("If-None-Match") != "" || req.Get("If-Modified-Since") != ""
	op := "get"
	if metaFirst {
		op = "head"
	}
	obj, err := await(bucket.Call(op, key))
	if err != nil {
		return fmt.Errorf("R2 %s %s: %w", op, key, err)
	}
	if obj.IsNull() || obj.IsUndefined() {
		return notFound(w, r, bucket, key, model)
	}
	m := meta(obj)
	reply := Decide(r.Method, req, key, m, out)
	if !reply.Body {
		w.WriteHeader(reply.Status)
		switch reply.Status {
		case http.StatusOK, http.StatusPartialContent:
			writeRaw(w, js.Null()) // HEAD (or an empty object): the headers, Content-Length included, and no body
		case http.StatusRequestedRangeNotSatisfiable:
			io.WriteString(w, "416 requested range not satisfiable\n")
		}
		return nil
	}
	if metaFirst {
		opts := map[string]any{
			// If the object was replaced since the head, send nothing rather than a mix of two versions.
			"onlyIf": map[string]any{"etagMatches": obj.Get("etag").String()},
		}
		if reply.Status == http.StatusPartialContent {
			opts["range"] = map[string]any{"offset": reply.Offset, "length": reply.Length}
		}
		obj, err = await(bucket.Call("get", key, opts))
		if err != nil {
			return fmt.Errorf("R2 get %s %v: %w", key, opts["range"], err)
		}
		if obj.IsNull() || obj.IsUndefined() || obj.Get("body").IsUndefined() {
			// Deleted or replaced between the two reads: a retry sees the new object whole.
			resetHeaders(out)
			out.Set("Retry-After", "1")
			httpError(w, http.StatusServiceUnavailable)
			return nil
		}
	}
	body := obj.Get("body")
	if reply.Status == http.StatusOK && r.Method == http.MethodGet && webfiles.IsShard(key) {
		body = cacheWhileSending(r, out, body, reply.Length)
	}
	w.WriteHeader(reply.Status)
	writeRaw(w, body)
	return nil
}

// notFound answers a missing key: 404, or for a site path that names a directory (site/x/index.html
// exists), a redirect to the path with its slash, as package server does.
func notFound(w http.ResponseWriter, r *http.Request, bucket js.Value, key string, model bool) error {
	if !model && !strings.HasSuffix(key, "/index.html") && !strings.HasSuffix(r.URL.Path, "/") {
		obj, err := await(bucket.Call("head", key+"/index.html"))
		if err == nil && !obj.IsNull() && !obj.IsUndefined() {
			target := r.URL.EscapedPath() + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			w.Header().Set("Location", target)
			w.WriteHeader(http.StatusMovedPermanently)
			return nil
		}
	}
	httpError(w, http.StatusNotFound)
	return nil
}

// cacheKey is the URL a shard is cached under: its own, without query or fragment (the page may add one).
func cacheKey(r *http.Request) string {
	u := *r.URL
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// cached are the headers kept with a shard in the edge cache and sent on a hit.
var cached = []string{"Content-Type", "Cache-Control", "ETag", "Last-Modified", "Accept-Ranges", "Content-Length", "Content-Range"}

// serveCached answers a shard's GET from the edge cache, through syumai/workers' cache package. A Range
// goes along with the lookup: the Cache API answers it with a 206 itself. It reports whether it answered.
func serveCached(w http.ResponseWriter, r *http.Request, req http.Header) bool {
	u, err := url.Parse(cacheKey(r))
	if err != nil {
		return false
	}
	lookup := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, Host: u.Host}
	if rng := req.Get("Range"); rng != "" {
		lookup.Header.Set("Range", rng)
	}
	res, err := cache.New().Match(lookup, nil)
	if err != nil {
		return false
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusPartialContent {
		res.Body.Close() // e.g. 416: R2's answer says the same, with this server's headers
		return false
	}
	got := joinHeader(res.Header)
	out := w.Header()
	out.Set("X-Edge-Cache", "HIT")
	m := Meta{ETag: got.Get("ETag")}
	if lm, err := http.ParseTime(got.Get("Last-Modified")); err == nil {
		m.Modified = lm
	}
	if notModified(req, m) {
		res.Body.Close()
		out.Set("ETag", got.Get("ETag"))
		out.Set("Cache-Control", got.Get("Cache-Control"))
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	for _, k := range cached {
		if v := got.Get(k); v != "" {
			out.Set(k, v)
		}
	}
	w.WriteHeader(res.StatusCode)
	io.Copy(w, res.Body) // the cache's stream as the response body, untouched (the library's WriteTo)
	return true
}

// cacheWhileSending tees a shard's R2 body: one branch is returned for the response, the other is put
// into the edge cache in the background (ctx.waitUntil via cloudflare.WaitUntil). The put goes through
// syscall/js: syumai/workers' cache.Put would copy all 64 MiB through Go in 16 KiB chunks, and wait for
// the whole put before the response could start.
func cacheWhileSending(r *http.Request, out http.Header, body js.Value, size int64) js.Value {
	branches := body.Call("tee")
	headers := js.Global().Get("Headers").New()
	for _, k := range cached {
		if v := out.Get(k); v != "" {
			headers.Call("append", k, v)
		}
	}
	init := js.Global().Get("Object").New()
	init.Set("status", http.StatusOK)
	init.Set("headers", headers)
	res := js.Global().Get("Response").New(fixedLength(branches.Index(1), size), init)
	put := js.Global().Get("caches").Get("default").Call("put", cacheKey(r), res)
	cloudflare.WaitUntil(func() {
		if _, err := await(put); err != nil {
			fmt.Printf("ilmweb worker: edge cache put %s: %v\n", r.URL.Path, err)
		}
	})
	return fixedLength(branches.Index(0), size)
}

// fixedLength gives a teed stream its length back (tee's branches lose it), so the response carries a
// Content-Length rather than chunked encoding. Outside workerd (no FixedLengthStream) it is returned as is.
func fixedLength(stream js.Value, size int64) js.Value {
	fls := js.Global().Get("FixedLengthStream")
	if fls.IsUndefined() {
		return stream
	}
	t := fls.New(size)
	// A client that goes away aborts the pipe; nothing to do about it but not to leave it unhandled.
	stream.Call("pipeTo", t.Get("writable")).Call("catch", noop)
	return t.Get("readable")
}

var noop = js.FuncOf(func(js.Value, []js.Value) any { return nil })

// writeRaw hands a JS ReadableStream (or null) to the library's ResponseWriter as the response body.
func writeRaw(w http.ResponseWriter, body js.Value) {
	if rw, ok := w.(interface{ WriteRawJSBody(js.Value) }); ok {
		rw.WriteRawJSBody(body)
	}
}

// meta reads an R2Object's metadata.
func meta(obj js.Value) Meta {
	m := Meta{
		Size: int64(obj.Get("size").Float()),
		ETag: obj.Get("httpEtag").String(),
	}
	if up := obj.Get("uploaded"); up.Truthy() {
		m.Modified = time.UnixMilli(int64(up.Call("getTime").Float()))
	}
	if hm := obj.Get("httpMetadata"); hm.Truthy() {
		if ct := hm.Get("contentType"); ct.Type() == js.TypeString {
			m.ContentType = ct.String()
		}
	}
	return m
}

// joinHeader undoes the library's conversion of JS Headers, which splits every value at its commas
// ("public, max-age=…" becomes three values, an HTTP date two): one value per name, as JS had it.
func joinHeader(h http.Header) http.Header {
	j := make(http.Header, len(h))
	for k, v := range h {
		j[k] = []string{strings.Join(v, ",")}
	}
	return j
}

// resetHeaders drops what was set for a response that is not going to be sent, keeping nosniff and CORS.
func resetHeaders(h http.Header) {
	for k := range h {
		if k != "X-Content-Type-Options" && !strings.HasPrefix(k, "Access-Control-") {
			h.Del(k)
		}
	}
}

// httpError writes status's short text body, as net/http's Error does.
func httpError(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	msg := "404 page not found"
	if status != http.StatusNotFound {
		msg = fmt.Sprintf("%d %s", status, strings.ToLower(http.StatusText(status)))
	}
	io.WriteString(w, msg+"\n")
}

// await waits for a JS promise; a rejection becomes an error.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	then := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{v: arg0(args)}
		return nil
	})
	catch := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "rejected"
		if e := arg0(args); e.Truthy() {
			msg = e.Call("toString").String()
		}
		ch <- result{err: fmt.Errorf("%s", msg)}
		return nil
	})
	p.Call("then", then, catch)
	res := <-ch
	then.Release()
	catch.Release()
	return res.v, res.err
}

func arg0(args []js.Value) js.Value {
	if len(args) == 0 {
		return js.Undefined()
	}
	return args[0]
}
