package server

import (
	"context"
	"net/http"
)

// apiState is the API's shared state (rate limiter, last-used batcher).
type apiState struct{}

func (s *Server) registerAPI(mux *http.ServeMux) error { return nil }

func (s *Server) closeAPI(ctx context.Context) error { return nil }
