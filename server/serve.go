package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Serve serves h on ln until ctx ends (cmd/serve ends it on SIGINT or SIGTERM), then shuts down
// gracefully: no new connections, and requests in flight get grace to finish. drain, if not nil, runs
// alongside with a context that ends when grace is over (the API cancels its generations then, so
// their streams end and the server can close).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, drain func(context.Context) error) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		if drain != nil {
			drain(graceCtx)
		}
	}()
	// Handlers whose generations were cancelled at the end of grace need a moment to write their last event.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), grace+2*time.Second)
	defer cancelClose()
	if srv.Shutdown(closeCtx) != nil {
		srv.Close() // still open after grace: that is what the deadline is for
	}
	<-drained
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
