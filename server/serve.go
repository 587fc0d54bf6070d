package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// Serve serves h on ln until ctx ends (cmd/serve ends it on SIGINT or SIGTERM), then shuts down
// gracefully: no new connections, and requests in flight get grace to finish. drain, if not nil, runs
// alongside with a context that ends when grace is over (the API cancels its generations then, so
// their streams end and the server can close).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, drain func(context.Context) error) error {
	srv := &http.Server{Handler: limitBodyTime(h), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
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

// bodyTimeout is how long a request's body may take to arrive whole (a var so that tests can shorten it).
var bodyTimeout = time.Minute

// limitBodyTime gives a request that has a body bodyTimeout to send it: a body trickled in a byte at a
// time would otherwise hold its connection and handler forever. It is a read deadline on the connection
// for the body only, lifted once the body is read: http.Server's ReadTimeout would stay on for the whole
// response, and its expiry cancels the request, which would cut long event streams.
func limitBodyTime(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
				r.Body = &deadlineBody{r.Body, rc}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body has been read to its end (or failed).
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
