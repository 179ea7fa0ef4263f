package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The harness talks to its children over a small JSON-over-HTTP control
// API on loopback: every call is a POST of a JSON request to /<verb>,
// answered with a JSON response or an HTTP error carrying the message.

// Server is a child's side of the control API.
type Server struct {
	mux *http.ServeMux
	srv *http.Server
	lis net.Listener
}

func NewServer() (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("control listener: %w", err)
	}
	mux := http.NewServeMux()
	return &Server{mux: mux, lis: lis, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the address the harness reaches the server at.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.srv.Shutdown(shut)
	}()
	go func() { _ = s.srv.Serve(s.lis) }()
}

// Handle registers the verb served by f. f runs with the request's context.
func Handle[Req, Resp any](s *Server, verb string, f func(ctx context.Context, req Req) (Resp, error)) {
	s.mux.HandleFunc("POST /"+verb, func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "decode request: "+err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := f(r.Context(), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
}
