package converter

// Downloading a model repository from the Hugging Face Hub (or a mirror that
// speaks the same "resolve" protocol) into a local cache.
//
// Protocol, as used by huggingface_hub:
//
//	file URL  = {endpoint}/{owner}/{name}/resolve/{revision}/{path}
//	HEAD      → 200 with Content-Length (+ ETag = git blob sha1 for plain files), or
//	            302 to a CDN for LFS/Xet files, with X-Linked-Size and
//	            X-Linked-Etag ("<sha256>") on that first response.
//
// Files are written to <name>.part, resumed with Range requests, verified
// (size, and sha256 when the hub gives one) and only then renamed into place.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ilmweb/ilmweb/internal/safefile"
	"github.com/ilmweb/ilmweb/safetensors"
)

// DownloadOptions configures Download. The zero value is ready to use.
// Progress reports bytes on disk for the whole download (files already in the
// cache count as done); done can step back if a server that ignores Range
// forces a file to restart.
type DownloadOptions struct {
	Endpoint string                  // default: $HF_ENDPOINT, else https://huggingface.co
	Token    string                  // default: $HF_TOKEN (sent as "Authorization: Bearer ...")
	Revision string                  // default "main"
	Progress func(done, total int64) // may be nil; called as bytes arrive (overall bytes across files; total is -1 when unknown)
	Client   *http.Client            // default: a client with sensible timeouts (no overall timeout: files are GBs)
}

const defaultHubEndpoint = "https://huggingface.co"

// Tunables; tests shorten them.
var (
	hubMaxAttempts  = 5 // consecutive failed attempts (without progress) per file
	hubBackoffBase  = 500 * time.Millisecond
	hubBackoffMax   = 15 * time.Second
	hubStallTimeout = 90 * time.Second // no bytes for this long: drop the connection and resume
	hubMaxRedirects = 10
)

// The files every conversion needs; the safetensors shards come from the index.
const (
	hubIndexFile  = "model.safetensors.index.json"
	hubSingleFile = "model.safetensors"
)

var hubBaseFiles = []struct {
	name     string
	optional bool
}{
	{"config.json", false},
	{"generation_config.json", true},
	{"tokenizer.model", false},
	{"tokenizer_config.json", false},
}

var (
	hubNamePart = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$`)
	hubRevision = regexp.MustCompile(`^[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*$`)
	hubSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

var errHubStalled = errors.New("stalled")

// validHubPart reports whether s is a valid Hub owner or repo name
// (Hub rules: [A-Za-z0-9._-], no "--" or "..", '-' and '.' not at the ends, at most 96 chars).
func validHubPart(s string) bool {
	return len(s) > 0 && len(s) <= 96 && hubNamePart.MatchString(s) &&
		!strings.Contains(s, "..") && !strings.Contains(s, "--")
}

func splitHubID(s string) (owner, name string, ok bool) {
	owner, name, found := strings.Cut(s, "/")
	if !found || !validHubPart(owner) || !validHubPart(name) {
		return "", "", false
	}
	return owner, name, true
}

// IsHubID reports whether s looks like "owner/name" and is not an existing local path.
func IsHubID(s string) bool {
	if _, _, ok := splitHubID(s); !ok {
		return false
	}
	_, err := os.Lstat(s)
	return err != nil
}

// DefaultCacheDir: $ILMWEB_CACHE, else os.UserCacheDir()/ilmweb/hub.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("ILMWEB_CACHE"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("hub: no user cache directory (set ILMWEB_CACHE): %v", err)
	}
	return filepath.Join(c, "ilmweb", "hub"), nil
}

// Download fetches config.json, generation_config.json (optional), tokenizer.model,
// tokenizer_config.json, model.safetensors.index.json and every safetensors file the
// index names (or model.safetensors when there is no index) into
// cacheDir/<owner>--<name>/<revision>/ and returns that directory.
// An empty cacheDir means DefaultCacheDir().
func Download(ctx context.Context, repoID, cacheDir string, opts DownloadOptions) (string, error) {
	owner, name, ok := splitHubID(repoID)
	if !ok {
		return "", fmt.Errorf("hub: invalid repo id %q: want owner/name (letters, digits, '-', '_', '.'; no '..' or '--')", repoID)
	}
	rev := opts.Revision
	if rev == "" {
		rev = "main"
	}
	if len(rev) > 255 || !hubRevision.MatchString(rev) || strings.Contains(rev, "..") {
		return "", fmt.Errorf("hub: invalid revision %q", rev)
	}
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = os.Getenv("HF_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = defaultHubEndpoint
	}
	base, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" ||
		base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return "", fmt.Errorf("hub: invalid endpoint %q: want http(s)://host[/path]", endpoint)
	}
	token := opts.Token
	if token == "" {
		token = os.Getenv("HF_TOKEN")
	}
	token = strings.TrimSpace(token)
	if cacheDir == "" {
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(cacheDir, owner+"--"+name, url.PathEscape(rev))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("hub: create cache directory: %v", err)
	}

	client := defaultHubClient()
	if opts.Client != nil {
		c := *opts.Client
		client = &c
	}
	// Redirects are followed by hand: we need the first response's X-Linked-*
	// headers, and the token must go only to the endpoint's own host.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	d := &hubDownloader{
		ctx:      ctx,
		client:   client,
		base:     base,
		token:    token,
		repo:     owner + "/" + name,
		owner:    owner,
		name:     name,
		rev:      rev,
		dir:      dir,
		progress: opts.Progress,
	}
	if err := d.run(); err != nil {
		return "", err
	}
	return dir, nil
}

func defaultHubClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone() // keeps proxy-from-environment, dial/TLS timeouts
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.ExpectContinueTimeout = time.Second
	return &http.Client{Transport: tr} // no Timeout: bodies are GBs; stalls are caught per read
}

type hubDownloader struct {
	ctx      context.Context
	client   *http.Client
	base     *url.URL
	token    string
	repo     string
	owner    string
	name     string
	rev      string
	dir      string
	progress func(done, total int64)
	done     int64
	total    int64
}

// hubFile is one file to fetch. size is -1 and sha256 "" when unknown.
type hubFile struct {
	name   string
	url    string
	size   int64
	sha256 string
}

// hubError is a one-line error naming the file and its URL.
type hubError struct {
	file, url, msg string
	retry          bool  // worth another attempt (network trouble, 5xx, 429)
	corrupt        bool  // the .part is bad: delete it
	err            error // wrapped cause, for errors.Is (context.Canceled, ...)
}

func (e *hubError) Error() string {
	return fmt.Sprintf("hub: %s (%s): %s", e.file, e.url, e.msg)
}

func (e *hubError) Unwrap() error { return e.err }

func (d *hubDownloader) errorf(f *hubFile, format string, args ...any) *hubError {
	return &hubError{file: f.name, url: f.url, msg: d.clean(fmt.Sprintf(format, args...))}
}

// clean makes a message one line and never shows the token.
func (d *hubDownloader) clean(s string) string {
	if d.token != "" {
		s = strings.ReplaceAll(s, d.token, "[token]")
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func (d *hubDownloader) fileURL(name string) string {
	return d.base.String() + "/" + d.owner + "/" + d.name + "/resolve/" + url.PathEscape(d.rev) + "/" + url.PathEscape(name)
}

func (d *hubDownloader) report() {
	if d.progress != nil {
		d.progress(d.done, d.total)
	}
}

func (d *hubDownloader) run() error {
	var files []*hubFile
	for _, bf := range hubBaseFiles {
		f, err := d.head(bf.name, bf.optional)
		if err != nil {
			return err
		}
		if f != nil {
			files = append(files, f)
		}
	}
	index, err := d.head(hubIndexFile, true)
	if err != nil {
		return err
	}
	var shards []string
	if index != nil {
		// The index is small: fetch it first (outside progress) to learn the shards.
		progress := d.progress
		d.progress = nil
		err := d.fetch(index)
		d.progress = progress
		if err != nil {
			return err
		}
		if shards, err = d.readIndex(index); err != nil {
			return err
		}
	} else {
		shards = []string{hubSingleFile}
	}
	for _, s := range shards {
		f, err := d.head(s, false)
		if err != nil {
			return err
		}
		files = append(files, f)
	}

	d.total = 0
	if index != nil {
		d.done = index.size
		d.total = index.size
	}
	for _, f := range files {
		if f.size < 0 {
			d.total = -1
			break
		}
		d.total += f.size
	}
	d.report()
	for _, f := range files {
		if err := d.fetch(f); err != nil {
			return err
		}
	}
	return nil
}

// readIndex returns the sorted, de-duplicated shard names of a safetensors index,
// each checked to be a plain file name.
func (d *hubDownloader) readIndex(f *hubFile) ([]string, error) {
	b, err := safefile.ReadFile(filepath.Join(d.dir, f.name), safetensors.MaxIndexSize)
	if err != nil {
		return nil, d.errorf(f, "%v", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, d.errorf(f, "bad index: %v", err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, d.errorf(f, "bad index: empty weight_map")
	}
	seen := map[string]bool{}
	var names []string
	for tensor, shard := range idx.WeightMap {
		if !plainShardName(shard) {
			return nil, d.errorf(f, "bad index: tensor %q names %q, not a plain *.safetensors file name", tensor, shard)
		}
		if !seen[shard] {
			seen[shard] = true
			names = append(names, shard)
		}
	}
	sort.Strings(names)
	return names, nil
}

func plainShardName(s string) bool {
	if s == "" || len(s) > 255 || s == "." || s == ".." || strings.HasPrefix(s, ".") ||
		strings.ContainsAny(s, `/\:`) || !strings.HasSuffix(s, ".safetensors") || filepath.IsAbs(s) ||
		filepath.Base(s) != s {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// hubMeta is what the hub said about a file along a redirect chain.
type hubMeta struct {
	size   int64  // X-Linked-Size, -1 if absent
	sha256 string // from X-Linked-Etag (or ETag on the hub's own answer), "" if not a sha256
	linked bool   // X-Linked-* seen
}

func (m *hubMeta) absorb(h http.Header, final bool) {
	if v := h.Get("X-Linked-Size"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			m.size, m.linked = n, true
		}
	}
	if s := etagSHA256(h.Get("X-Linked-Etag")); s != "" {
		m.sha256, m.linked = s, true
	} else if final && m.sha256 == "" {
		m.sha256 = etagSHA256(h.Get("ETag"))
	}
}

// etagSHA256 returns the sha256 in an ETag such as "<64 hex>" or W/"<64 hex>", else "".
func etagSHA256(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "W/")
	v = strings.ToLower(strings.Trim(v, `"`))
	if hubSHA256.MatchString(v) {
		return v
	}
	return ""
}

// do sends one request and follows redirects by hand. The token goes only to the
// endpoint's own scheme and host:port. With stopAtLinked, a redirect that
// already carries X-Linked-* headers is returned instead of followed (HEAD).
func (d *hubDownloader) do(ctx context.Context, method, rawURL string, offset int64, stopAtLinked bool) (*http.Response, hubMeta, error) {
	meta := hubMeta{size: -1}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, meta, err
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, meta, err
		}
		req.Header.Set("User-Agent", "ilmweb/hub")
		req.Header.Set("Accept-Encoding", "identity") // byte-exact sizes and ranges
		if offset > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		}
		own := strings.EqualFold(u.Scheme, d.base.Scheme) && strings.EqualFold(u.Host, d.base.Host)
		if own && d.token != "" {
			req.Header.Set("Authorization", "Bearer "+d.token)
		}
		resp, err := d.client.Do(req)
		if err != nil {
			return nil, meta, err
		}
		redirect := resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.StatusCode != http.StatusNotModified
		if own {
			meta.absorb(resp.Header, !redirect)
		}
		if !redirect || (stopAtLinked && meta.linked) {
			return resp, meta, nil
		}
		loc := resp.Header.Get("Location")
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if loc == "" {
			return nil, meta, fmt.Errorf("%s redirect without a Location", resp.Status)
		}
		next, err := u.Parse(loc)
		if err != nil || (next.Scheme != "http" && next.Scheme != "https") {
			return nil, meta, fmt.Errorf("bad redirect location %q", loc)
		}
		if hop >= hubMaxRedirects {
			return nil, meta, fmt.Errorf("too many redirects")
		}
		u = next
	}
}

// statusErr explains a failed HTTP status.
func (d *hubDownloader) statusErr(f *hubFile, resp *http.Response) *hubError {
	var e *hubError
	switch c := resp.StatusCode; {
	case c == http.StatusUnauthorized || c == http.StatusForbidden:
		hint := "set HF_TOKEN to a Hugging Face access token"
		if d.token != "" {
			hint = "check that HF_TOKEN (or the token given) is valid and has read access"
		}
		e = d.errorf(f, "%s: access denied to %s; the repo may be gated, private or missing: %s, and accept the model's license on its Hugging Face page",
			resp.Status, d.repo, hint)
	case c == http.StatusNotFound:
		e = d.errorf(f, "%s: %s not found in repo %s at revision %s (or the repo does not exist)", resp.Status, f.name, d.repo, d.rev)
	default:
		e = d.errorf(f, "unexpected HTTP status %s", resp.Status)
		e.retry = c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500
	}
	if m := resp.Header.Get("X-Error-Message"); m != "" {
		e.msg += " " + d.clean("(hub says: "+m+")")
	}
	return e
}

// netErr classifies a transport error.
func (d *hubDownloader) netErr(f *hubFile, err error, reqCtx context.Context) *hubError {
	if cerr := d.ctx.Err(); cerr != nil {
		e := d.errorf(f, "%v", cerr)
		e.err = cerr
		return e
	}
	if reqCtx != nil && errors.Is(context.Cause(reqCtx), errHubStalled) {
		e := d.errorf(f, "no data received for %v", hubStallTimeout)
		e.retry = true
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is already in the message
	}
	e := d.errorf(f, "%v", err)
	e.retry, e.err = true, err
	return e
}

// retry runs attempt until it succeeds, fails for good, or has failed
// hubMaxAttempts times in a row without progress, backing off in between.
func (d *hubDownloader) retry(f *hubFile, attempt func() (progressed bool, err error)) error {
	failures := 0
	for {
		progressed, err := attempt()
		if err == nil {
			return nil
		}
		if cerr := d.ctx.Err(); cerr != nil {
			e := d.errorf(f, "%v", cerr)
			e.err = cerr
			return e
		}
		var he *hubError
		if !errors.As(err, &he) || !he.retry {
			return err
		}
		if progressed {
			failures = 0
		}
		failures++
		if failures >= hubMaxAttempts {
			he.msg += fmt.Sprintf(" (gave up after %d attempts)", failures)
			return he
		}
		wait := hubBackoffBase << (failures - 1)
		if wait > hubBackoffMax || wait <= 0 {
			wait = hubBackoffMax
		}
		t := time.NewTimer(wait)
		select {
		case <-d.ctx.Done():
			t.Stop()
			e := d.errorf(f, "%v", d.ctx.Err())
			e.err = d.ctx.Err()
			return e
		case <-t.C:
		}
	}
}

// head learns a file's size and sha256. For an optional file that the hub
// says is missing (404) it returns nil, nil.
func (d *hubDownloader) head(name string, optional bool) (*hubFile, error) {
	f := &hubFile{name: name, url: d.fileURL(name), size: -1}
	var missing bool
	err := d.retry(f, func() (bool, error) {
		resp, meta, err := d.do(d.ctx, http.MethodHead, f.url, 0, true)
		if err != nil {
			return false, d.netErr(f, err, nil)
		}
		resp.Body.Close()
		switch c := resp.StatusCode; {
		case c >= 200 && c < 400:
			f.size, f.sha256 = meta.size, meta.sha256
			if f.size < 0 && c < 300 && resp.ContentLength >= 0 {
				f.size = resp.ContentLength
			}
			return false, nil
		case c == http.StatusMethodNotAllowed || c == http.StatusNotImplemented:
			return false, nil // no HEAD: learn what we can from the GET
		case c == http.StatusNotFound && optional:
			missing = true
			return false, nil
		default:
			return false, d.statusErr(f, resp)
		}
	})
	if err != nil || missing {
		return nil, err
	}
	return f, nil
}

// fetch makes sure dir/f.name exists and is verified, downloading (and
// resuming) through dir/f.name.part as needed.
func (d *hubDownloader) fetch(f *hubFile) error {
	final := filepath.Join(d.dir, f.name)
	part := final + ".part"
	base := d.done
	if ok, err := d.havePresent(f, final); err != nil {
		return err
	} else if ok {
		d.done = base + f.size
		d.report()
		return nil
	}

	pf, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return d.errorf(f, "%v", err)
	}
	defer pf.Close()
	st := &hubPart{f: pf, h: sha256.New()}
	fi, err := pf.Stat()
	if err != nil {
		return d.errorf(f, "%v", err)
	}
	st.off = fi.Size()
	if f.size >= 0 && st.off > f.size {
		if err := st.reset(); err != nil {
			return d.errorf(f, "%v", err)
		}
	}
	if st.off > 0 { // resume: hash what is already there
		if _, err := io.Copy(st.h, io.NewSectionReader(pf, 0, st.off)); err != nil {
			return d.errorf(f, "read %s: %v", part, err)
		}
		if _, err := pf.Seek(st.off, io.SeekStart); err != nil {
			return d.errorf(f, "%v", err)
		}
	}
	d.done = base + st.off
	d.report()

	err = d.retry(f, func() (bool, error) { return d.fetchOnce(f, st, base) })
	if err == nil {
		err = d.verify(f, st)
	}
	if err != nil {
		var he *hubError
		if errors.As(err, &he) && he.corrupt {
			pf.Close()
			os.Remove(part)
		}
		return err
	}
	if err := pf.Sync(); err != nil {
		return d.errorf(f, "%v", err)
	}
	if err := pf.Close(); err != nil {
		return d.errorf(f, "%v", err)
	}
	if err := os.Rename(part, final); err != nil {
		return d.errorf(f, "%v", err)
	}
	return nil
}

// havePresent reports whether the final file is already there and matches
// the hub's size (and sha256, when known).
func (d *hubDownloader) havePresent(f *hubFile, final string) (bool, error) {
	fi, err := os.Stat(final)
	if err != nil || !fi.Mode().IsRegular() || f.size < 0 || fi.Size() != f.size {
		return false, nil
	}
	if f.sha256 == "" {
		return true, nil
	}
	sum, err := hashFile(d.ctx, final)
	if err != nil {
		if cerr := d.ctx.Err(); cerr != nil {
			e := d.errorf(f, "%v", cerr)
			e.err = cerr
			return false, e
		}
		return false, nil
	}
	return sum == f.sha256, nil
}

func hashFile(ctx context.Context, path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, fh}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (d *hubDownloader) verify(f *hubFile, st *hubPart) error {
	if f.size >= 0 && st.off != f.size {
		e := d.errorf(f, "size mismatch: got %d bytes, want %d", st.off, f.size)
		e.corrupt = true
		return e
	}
	if f.sha256 != "" {
		if got := hex.EncodeToString(st.h.Sum(nil)); got != f.sha256 {
			e := d.errorf(f, "sha256 mismatch: got %s, want %s", got, f.sha256)
			e.corrupt = true
			return e
		}
	}
	return nil
}

// hubPart is the .part file being written, with the running hash of its contents.
type hubPart struct {
	f   *os.File
	h   hash.Hash
	off int64
}

func (p *hubPart) reset() error {
	if err := p.f.Truncate(0); err != nil {
		return err
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	p.h.Reset()
	p.off = 0
	return nil
}

// fetchOnce makes one GET for the rest of the file, appending to the .part.
func (d *hubDownloader) fetchOnce(f *hubFile, st *hubPart, base int64) (progressed bool, _ error) {
	if f.size >= 0 && st.off == f.size {
		return false, nil
	}
	reqCtx, cancel := context.WithCancelCause(d.ctx)
	defer cancel(nil)
	stall := time.AfterFunc(hubStallTimeout, func() { cancel(errHubStalled) })
	defer stall.Stop()

	resp, meta, err := d.do(reqCtx, http.MethodGet, f.url, st.off, false)
	if err != nil {
		return false, d.netErr(f, err, reqCtx)
	}
	defer resp.Body.Close()
	if f.size < 0 && meta.size >= 0 {
		f.size = meta.size
	}
	if f.sha256 == "" {
		f.sha256 = meta.sha256
	}
	restart := func(why string) (bool, error) {
		if err := st.reset(); err != nil {
			return false, d.errorf(f, "%v", err)
		}
		d.done = base
		d.report()
		e := d.errorf(f, "%s", why)
		e.retry = true
		return false, e
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != st.off {
			return restart(fmt.Sprintf("server sent range %q for a request from byte %d", resp.Header.Get("Content-Range"), st.off))
		}
		if f.size < 0 && total >= 0 {
			f.size = total
		}
	case http.StatusOK:
		if st.off > 0 { // server ignored Range: start this file over
			if err := st.reset(); err != nil {
				return false, d.errorf(f, "%v", err)
			}
			d.done = base
			d.report()
		}
		if f.size < 0 && resp.ContentLength >= 0 {
			f.size = resp.ContentLength
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == st.off && (f.size < 0 || f.size == total) {
			f.size = total
			return false, nil // already complete
		}
		return restart("server cannot resume from byte " + strconv.FormatInt(st.off, 10))
	default:
		return false, d.statusErr(f, resp)
	}

	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(hubStallTimeout)
			if _, err := st.f.Write(buf[:n]); err != nil {
				return progressed, d.errorf(f, "write: %v", err)
			}
			st.h.Write(buf[:n])
			st.off += int64(n)
			progressed = true
			d.done = base + st.off
			d.report()
			if f.size >= 0 && st.off > f.size {
				e := d.errorf(f, "size mismatch: server sent more than %d bytes", f.size)
				e.corrupt = true
				return progressed, e
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return progressed, d.netErr(f, rerr, reqCtx)
		}
	}
	if f.size >= 0 && st.off < f.size {
		e := d.errorf(f, "connection closed after %d of %d bytes", st.off, f.size)
		e.retry = true
		return progressed, e
	}
	return progressed, nil
}

// parseContentRange parses "bytes START-END/TOTAL" or "bytes */TOTAL";
// start is -1 for the latter, total -1 for "*".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		n, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		total = n
	}
	if rng == "*" {
		return -1, total, true
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, 0, false
	}
	return n, total, true
}
