package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// The query endpoint. The embedded engine opens a data directory in one
// process only, so while `auditwatch run` holds the store it answers the
// runbook queries itself: `auditwatch query` finds the endpoint from the
// same storage config and sends the query's name and arguments (never
// SQL); the running process builds and runs the catalog query on its own
// read-only connection (readonly=1 and the storage.query limits) and
// returns the rows. The answer is what the writer has flushed: events at
// most one checkpoint plus storage.batch.max_interval (5 s) behind the
// stream, findings about 200 ms.

func init() { gob.Register(time.Time{}) }

// Querier answers runbook queries: a store opened read-only, or the query
// endpoint of the process that holds an embedded store.
type Querier interface {
	Query(ctx context.Context, name string, args QueryArgs) (*Result, error)
	Close() error
}

type queryRequest struct {
	Name string    `json:"name"`
	Args QueryArgs `json:"args"`
}

// maxRequestBytes bounds a query request's body.
const maxRequestBytes = 64 << 10

// QueryServer serves runbook queries on storage.query.listen.
type QueryServer struct {
	db     Store
	srv    *http.Server
	ln     net.Listener
	socket string
	done   chan struct{}
}

// ServeQueries starts the query endpoint of the process that has opened
// the embedded store for writing (with Open). It returns nil, nil when the
// config has no endpoint (a server backend, or listen: off).
func ServeQueries(ctx context.Context, cfg Config, logger *slog.Logger) (*QueryServer, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	network, addr := cfg.Endpoint()
	if network == "" {
		return nil, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var token string
	if network == "tcp" {
		t, err := cfg.Query.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("storage.query.token: %w", err)
		}
		token = t
	}
	db, err := open(ctx, cfg, served, logger)
	if err != nil {
		return nil, err
	}
	s := &QueryServer{db: db, done: make(chan struct{})}
	if network == "unix" {
		// This process holds the store's lock: a socket left here is
		// from a process that died.
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr)
		}
		s.socket = addr
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage.query.listen %s: %w", cfg.Query.Listen, err)
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			ln.Close()
			db.Close()
			return nil, fmt.Errorf("storage.query.listen %s: %w", cfg.Query.Listen, err)
		}
	}
	s.ln = ln
	timeout := cfg.Query.MaxExecutionTime.D() + 5*time.Second
	mux := http.NewServeMux()
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				http.Error(w, "query endpoint: bad or missing token", http.StatusUnauthorized)
				return
			}
		}
		var req queryRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "query endpoint: bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		qctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res, err := db.Query(qctx, req.Name, req.Args)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrQueryArgs) || errors.Is(err, ErrUnknownQuery) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(res); err != nil {
			http.Error(w, "query endpoint: encode: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-gob")
		w.Write(buf.Bytes())
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("query endpoint stopped", "err", err)
		}
	}()
	logger.Info("query endpoint listening", "listen", cfg.Query.Listen)
	return s, nil
}

// Addr is the listener's address.
func (s *QueryServer) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving, waiting for queries in flight up to ctx, and closes
// the endpoint's connection and socket.
func (s *QueryServer) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	if s.socket != "" {
		os.Remove(s.socket)
	}
	return errors.Join(err, s.db.Close())
}

// OpenQuery opens what answers runbook queries for cfg: a server backend
// read-only; an embedded store read-only when no process holds it; else the
// query endpoint of the process that does (`auditwatch run`), waiting a few
// seconds for one that is starting. A missing embedded store is ErrNoStore
// (nothing is created).
func OpenQuery(ctx context.Context, cfg Config, logger *slog.Logger) (Querier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Backend != BackendCHDB {
		return open(ctx, cfg, ReadOnly, logger)
	}
	if err := storeExists(cfg.CHDB.Path); err != nil {
		return nil, err
	}
	network, addr := cfg.Endpoint()
	var token string
	if network == "tcp" {
		t, err := cfg.Query.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("storage.query.token: %w", err)
		}
		token = t
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if network != "" {
			if c, err := net.DialTimeout(network, addr, time.Second); err == nil {
				c.Close()
				return newRemote(network, addr, token, cfg.Query.MaxExecutionTime.D()+10*time.Second), nil
			}
		}
		st, err := open(ctx, cfg, ReadOnly, logger)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, ErrStoreBusy) {
			return nil, err
		}
		if network == "" {
			return nil, fmt.Errorf("%w, and storage.query.listen is off: stop it or enable its query endpoint", err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w, and its query endpoint %s does not answer", err, cfg.Query.Listen)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// remote asks a running process's query endpoint.
type remote struct {
	client *http.Client
	url    string
	token  string
}

func newRemote(network, addr, token string, timeout time.Duration) *remote {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	host := addr
	if network == "unix" {
		host = "auditwatch"
	}
	return &remote{client: &http.Client{Transport: tr, Timeout: timeout}, url: "http://" + host + "/query", token: token}
}

func (r *remote) Query(ctx context.Context, name string, args QueryArgs) (*Result, error) {
	body, err := json.Marshal(queryRequest{Name: name, Args: args})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := errors.New(strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusBadRequest {
			err = fmt.Errorf("%w: %w", err, ErrQueryArgs)
		}
		return nil, fmt.Errorf("query endpoint (%s): %w", resp.Status, err)
	}
	var res Result
	if err := gob.NewDecoder(resp.Body).Decode(&res); err != nil {
		return nil, fmt.Errorf("query endpoint: decode answer: %w", err)
	}
	return &res, nil
}

func (r *remote) Close() error {
	r.client.CloseIdleConnections()
	return nil
}
