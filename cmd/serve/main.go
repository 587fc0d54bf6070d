// Command serve serves the chat page and the model over HTTP, or with -api an OpenAI-compatible chat API
// on the native engine.
//
//	go run ./cmd/serve [-addr 127.0.0.1:8080] [-site build/web] [-model DIR]
//	go run ./cmd/serve -api [-addr 127.0.0.1:23333] -model DIR [-backend cpu|gpu] [-ctx 4096] [-queue 8] [-name ID]
//
// It listens on loopback unless -addr names another interface, and stops gracefully on SIGINT or SIGTERM.
// On loopback, requests under a foreign Host name are refused (DNS rebinding), and the API refuses pages
// from origins other than its own, loopback ones and those in -origins.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ilmweb/ilmweb/backend"
	"github.com/ilmweb/ilmweb/model"
	"github.com/ilmweb/ilmweb/server"
)

type options struct {
	addr, site, model string
	api               bool
	backend, name     string
	ctxLen, queue     int
	origins           string
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "listen address (default 127.0.0.1:8080, or 127.0.0.1:23333 with -api)")
	flag.StringVar(&o.site, "site", "build/web", "the built site (make web), served at /")
	flag.StringVar(&o.model, "model", "", "model directory: served at /model/, or loaded with -api")
	flag.BoolVar(&o.api, "api", false, "serve the OpenAI-compatible API (/v1/chat/completions) instead of the site")
	flag.StringVar(&o.backend, "backend", "cpu", "engine for -api: "+backend.Names)
	flag.StringVar(&o.name, "name", "internlm3-8b-instruct", "model id the API answers to")
	flag.IntVar(&o.ctxLen, "ctx", 4096, "context length in tokens for -api (prompt and answer)")
	flag.IntVar(&o.queue, "queue", 8, "requests that may wait while one generates (-api); more get 429")
	flag.StringVar(&o.origins, "origins", server.DefaultOrigins(), "comma-separated origins whose pages may call the API besides its own and loopback ones, \"*\" for any (default $"+server.OriginsEnv+")")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	var (
		h     http.Handler
		drain func(context.Context) error
		what  string
	)
	if o.api {
		if o.addr == "" {
			o.addr = "127.0.0.1:23333"
		}
		api, err := newAPI(o)
		if err != nil {
			return err
		}
		h, drain, what = api, api.Shutdown, fmt.Sprintf("OpenAI-compatible API (model %q, context %d tokens) at", o.name, api.ContextLen())
	} else {
		if o.addr == "" {
			o.addr = "127.0.0.1:8080"
		}
		site, err := server.NewSite(server.SiteConfig{Site: o.site, Model: o.model})
		if err != nil {
			return err
		}
		h, what = site, "chat page at"
	}
	h = server.Guard(h, server.GuardConfig{Addr: o.addr, Origins: server.ParseOrigins(o.origins), CheckOrigin: o.api})
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String() + "/"
	if o.api {
		url += "v1"
	}
	fmt.Printf("serving the %s %s (Ctrl-C to stop)\n", what, url)
	return server.Serve(ctx, ln, h, 10*time.Second, drain)
}

func newAPI(o options) (*server.API, error) {
	if o.model == "" {
		return nil, fmt.Errorf("-api needs -model DIR")
	}
	m, b, err := backend.Load(o.backend, o.model, o.ctxLen, nil)
	if err != nil {
		return nil, err
	}
	fmt.Println("engine:", b.Name)
	queue := o.queue
	if queue == 0 {
		queue = -1 // the flag's 0 means no waiting; the config's 0 means the default
	}
	// The engine is built already (on the GPU, streamed from a converted model's shards): the API takes it.
	return server.NewAPI(server.APIConfig{Model: m, ModelID: o.name,
		NewDecoder: func(*model.Model, int) (model.Decoder, error) { return b, nil },
		ContextLen: b.MaxContext(), QueueSize: queue})
}
