package server

import "net/http"

// pageState is the web inbox's shared state (templates, sign-in limiter).
type pageState struct{}

func (s *Server) registerPages(mux *http.ServeMux) error { return nil }
