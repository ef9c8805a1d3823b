package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/valethq/valet/server"
)

func TestConfigPrecedence(t *testing.T) {
	files := map[string]string{"/run/secrets/db": "postgres://valet:s3cret@db/valet\n"}
	readFile := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
		err   string
	}{
		{name: "defaults", args: []string{"serve"}, check: func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:8080" || c.DB != "valet.db" || c.Issuer != "" || c.LogFormat != "text" ||
				c.APIKeyLimit != (server.RateLimit{Requests: 40, Per: 20 * time.Second}) ||
				c.OAuthLimit != (server.RateLimit{Requests: 80, Per: 20 * time.Second}) {
				t.Errorf("%+v", c)
			}
		}},
		{name: "env over defaults", args: []string{"serve"},
			env: map[string]string{"VALET_ADDR": ":9000", "VALET_DB": "/var/lib/valet.db", "VALET_LOG_LEVEL": "debug",
				"VALET_API_KEY_RATE_LIMIT": "100/1m", "VALET_ISSUER": "https://help.example.com/"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9000" || c.DB != "/var/lib/valet.db" || c.LogLevel != slog.LevelDebug ||
					c.APIKeyLimit != (server.RateLimit{Requests: 100, Per: time.Minute}) || c.Issuer != "https://help.example.com" {
					t.Errorf("%+v", c)
				}
			}},
		{name: "flags over env", args: []string{"serve", "--addr", ":9001", "--api-key-rate-limit", "5/1s"},
			env: map[string]string{"VALET_ADDR": ":9000", "VALET_API_KEY_RATE_LIMIT": "100/1m"},
			check: func(t *testing.T, c Config) {
				if c.Addr != ":9001" || c.APIKeyLimit != (server.RateLimit{Requests: 5, Per: time.Second}) {
					t.Errorf("%+v", c)
				}
			}},
		{name: "secret from file", args: []string{"migrate"}, env: map[string]string{"VALET_DB_FILE": "/run/secrets/db"},
			check: func(t *testing.T, c Config) {
				if c.DB != "postgres://valet:s3cret@db/valet" {
					t.Errorf("DB %q", c.DB)
				}
			}},
		{name: "secret twice", args: []string{"migrate"}, env: map[string]string{"VALET_DB": "x.db", "VALET_DB_FILE": "/run/secrets/db"},
			err: "not both"},
		{name: "secret file missing", args: []string{"migrate"}, env: map[string]string{"VALET_DB_FILE": "/nope"}, err: "VALET_DB_FILE"},
		{name: "bad env value", args: []string{"serve"}, env: map[string]string{"VALET_SHUTDOWN_TIMEOUT": "soon"}, err: "VALET_SHUTDOWN_TIMEOUT"},
		{name: "demo ignores VALET_DB", args: []string{"demo"}, env: map[string]string{"VALET_DB": "production.db"},
			check: func(t *testing.T, c Config) {
				if c.DB != "valet-demo.db" {
					t.Errorf("demo DB %q", c.DB)
				}
			}},
		{name: "demo --db", args: []string{"demo", "--db", "/tmp/d.db"}, check: func(t *testing.T, c Config) {
			if c.DB != "/tmp/d.db" {
				t.Errorf("demo DB %q", c.DB)
			}
		}},
		{name: "bad log format", args: []string{"serve", "--log-format", "xml"}, err: "--log-format"},
		{name: "zero timeout", args: []string{"serve", "--shutdown-timeout", "0s"}, err: "--shutdown-timeout"},
		{name: "token lifetimes", args: []string{"serve", "--access-token-ttl", "1h", "--refresh-absolute-ttl", "2160h"},
			env: map[string]string{"VALET_REFRESH_IDLE_TTL": "168h", "VALET_ACCESS_TOKEN_TTL": "2h"},
			check: func(t *testing.T, c Config) {
				if c.AccessTokenTTL != time.Hour || c.RefreshIdleTTL != 168*time.Hour || c.RefreshAbsoluteTTL != 2160*time.Hour {
					t.Errorf("lifetimes %v %v %v", c.AccessTokenTTL, c.RefreshIdleTTL, c.RefreshAbsoluteTTL)
				}
			}},
		{name: "default token lifetimes", args: []string{"serve"}, check: func(t *testing.T, c Config) {
			if c.AccessTokenTTL != 24*time.Hour || c.RefreshIdleTTL != 30*24*time.Hour || c.RefreshAbsoluteTTL != 365*24*time.Hour {
				t.Errorf("lifetimes %v %v %v", c.AccessTokenTTL, c.RefreshIdleTTL, c.RefreshAbsoluteTTL)
			}
		}},
		{name: "access token too short", args: []string{"serve", "--access-token-ttl", "30s"}, err: "--access-token-ttl"},
		{name: "webhooks to private addresses", args: []string{"serve"}, env: map[string]string{"VALET_WEBHOOK_ALLOW_PRIVATE": "true"},
			check: func(t *testing.T, c Config) {
				if !c.WebhookAllowPrivate {
					t.Error("VALET_WEBHOOK_ALLOW_PRIVATE=true not taken")
				}
			}},
		{name: "webhooks to private addresses, bad value", args: []string{"serve"},
			env: map[string]string{"VALET_WEBHOOK_ALLOW_PRIVATE": "maybe"}, err: "VALET_WEBHOOK_ALLOW_PRIVATE"},
		{name: "no webhooks to private addresses by default", args: []string{"serve"}, check: func(t *testing.T, c Config) {
			if c.WebhookAllowPrivate {
				t.Error("private webhook targets allowed by default")
			}
		}},
		{name: "absolute shorter than idle", args: []string{"serve", "--refresh-idle-ttl", "48h", "--refresh-absolute-ttl", "24h"},
			err: "--refresh-absolute-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMain()
			m.Getenv = func(k string) string { return tt.env[k] }
			m.ReadFile = readFile
			err := m.ParseFlags(context.Background(), tt.args)
			if tt.err != "" {
				var ue *usageError
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &ue) {
					t.Fatalf("err %v, want a usage error mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m.Config)
		})
	}
}

func TestRateLimitValue(t *testing.T) {
	for in, want := range map[string]server.RateLimit{
		"40/20s":  {Requests: 40, Per: 20 * time.Second},
		"80 / 1m": {Requests: 80, Per: time.Minute},
	} {
		var got server.RateLimit
		if err := (rateLimitValue{&got}).Set(in); err != nil || got != want {
			t.Errorf("Set(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"40", "0/20s", "-1/20s", "40/0s", "40/soon", "x/20s"} {
		var got server.RateLimit
		if err := (rateLimitValue{&got}).Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	l := server.RateLimit{Requests: 10, Per: 5 * time.Minute}
	if s := (rateLimitValue{&l}).String(); s != "10/5m" {
		t.Errorf("String() = %q", s)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"valet.db": "valet.db",
		"postgres://valet:s3cret@db:5432/valet?sslmode=disable": "postgres://valet:xxxxx@db:5432/valet?sslmode=disable",
		"postgres://db/valet?password=s3cret&sslmode=require":   "postgres://db/valet?password=xxxxx&sslmode=require",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameFromEmail(t *testing.T) {
	for in, want := range map[string]string{"jane.doe@example.com": "Jane Doe", "owner@acme.example": "Owner", "a_b-c@x": "A B C"} {
		if got := nameFromEmail(in); got != want {
			t.Errorf("nameFromEmail(%q) = %q, want %q", in, got, want)
		}
	}
}
