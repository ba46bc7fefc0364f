// Package chdb owns auditwatch's binding to libchdb, the embedded ClickHouse
// engine that backs the default "chdb" storage backend.
//
// Why not github.com/chdb-io/chdb-go: its chdb-purego package dlopens
// libchdb.so in a package init function and panics when the library is
// missing, so merely linking it into the auditwatch binary would make every
// subcommand (version, normalize, run with storage off, …) crash on a
// machine without the 560 MB library. The library is also loaded at start-up
// even when storage is off. Instead this package is a small purego binding
// to libchdb's stable C API (chdb.h) that loads the library on first use,
// inside Load, and reports ErrLibraryMissing as an ordinary error. It also
// binds chdb_query_with_params_n, which chdb-go v1.11.0 does not expose, so
// user input reaches the engine as bound {name:Type} parameters and is never
// spliced into SQL text.
//
// The library is found, in order, at: the path given to Load, $CHDB_LIB_PATH
// (when set, nothing else is tried),
// .cache/chdb/<version>/package/libchdb.so under the working directory or any
// parent (where scripts/fetch-chdb.sh puts it), /usr/local/lib/libchdb.so,
// and finally the dynamic loader's own search path.
package chdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// LibVersion is the npm version of @chdb/lib-linux-x64-gnu this package is
// built and tested against.
const LibVersion = "26.7.3-stable.1"

// ErrLibraryMissing is returned when libchdb.so cannot be found or loaded.
var ErrLibraryMissing = errors.New("libchdb.so not found (run `make chdb` or scripts/fetch-chdb.sh, or set CHDB_LIB_PATH)")

// ErrClosed is returned by a Conn used after Close.
var ErrClosed = errors.New("chdb connection is closed")

var (
	loadOnce sync.Once
	loadErr  error
	loadPath string

	cConnect         func(argc int32, argv **byte) unsafe.Pointer
	cCloseConn       func(conn unsafe.Pointer)
	cQueryN          func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	cQueryWithParams func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr,
		names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, count uintptr) unsafe.Pointer
	cStreamInsert  func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	cStreamAppend  func(stream unsafe.Pointer, data unsafe.Pointer, n uintptr) int32
	cStreamDone    func(stream unsafe.Pointer) unsafe.Pointer
	cStreamError   func(stream unsafe.Pointer) unsafe.Pointer
	cStreamDestroy func(stream unsafe.Pointer)
	cResultBuffer  func(res unsafe.Pointer) unsafe.Pointer
	cResultLength  func(res unsafe.Pointer) uintptr
	cResultError   func(res unsafe.Pointer) unsafe.Pointer
	cResultRows    func(res unsafe.Pointer) uint64
	cDestroyResult func(res unsafe.Pointer)
)

// FindLibrary returns the first existing candidate path for libchdb.so, or
// "" when none exists (the dynamic loader may still find it by name).
func FindLibrary(explicit string) string {
	var cands []string
	if explicit != "" {
		cands = append(cands, explicit)
	}
	if p := os.Getenv("CHDB_LIB_PATH"); p != "" {
		// An explicit environment path is the only candidate: no fallback
		// to another copy of the library.
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			cands = append(cands, filepath.Join(d, ".cache", "chdb", LibVersion, "package", "libchdb.so"))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "..", ".cache", "chdb", LibVersion, "package", "libchdb.so"))
	}
	cands = append(cands, "/usr/local/lib/libchdb.so")
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	return ""
}

// Load loads libchdb once per process. Later calls return the first
// outcome; path is only consulted by the first call.
func Load(path string) error {
	loadOnce.Do(func() {
		p := FindLibrary(path)
		if p == "" {
			if env := os.Getenv("CHDB_LIB_PATH"); env != "" {
				loadErr = fmt.Errorf("CHDB_LIB_PATH=%s does not exist: %w", env, ErrLibraryMissing)
				return
			}
			p = "libchdb.so"
		}
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			loadErr = fmt.Errorf("load %s: %v: %w", p, err, ErrLibraryMissing)
			return
		}
		loadPath = p
		defer func() {
			if r := recover(); r != nil { // RegisterLibFunc panics on a missing symbol
				loadErr = fmt.Errorf("%s lacks a chdb C API symbol (%v); need @chdb/lib-linux-x64-gnu@%s: %w", p, r, LibVersion, ErrLibraryMissing)
			}
		}()
		purego.RegisterLibFunc(&cConnect, h, "chdb_connect")
		purego.RegisterLibFunc(&cCloseConn, h, "chdb_close_conn")
		purego.RegisterLibFunc(&cQueryN, h, "chdb_query_n")
		purego.RegisterLibFunc(&cQueryWithParams, h, "chdb_query_with_params_n")
		purego.RegisterLibFunc(&cStreamInsert, h, "chdb_stream_insert_n")
		purego.RegisterLibFunc(&cStreamAppend, h, "chdb_stream_append")
		purego.RegisterLibFunc(&cStreamDone, h, "chdb_stream_done")
		purego.RegisterLibFunc(&cStreamError, h, "chdb_stream_insert_error")
		purego.RegisterLibFunc(&cStreamDestroy, h, "chdb_destroy_insert_stream")
		purego.RegisterLibFunc(&cResultBuffer, h, "chdb_result_buffer")
		purego.RegisterLibFunc(&cResultLength, h, "chdb_result_length")
		purego.RegisterLibFunc(&cResultError, h, "chdb_result_error")
		purego.RegisterLibFunc(&cResultRows, h, "chdb_result_rows_read")
		purego.RegisterLibFunc(&cDestroyResult, h, "chdb_destroy_query_result")
	})
	return loadErr
}

// LoadedPath is the path libchdb was loaded from ("" before a successful Load).
func LoadedPath() string { return loadPath }

// Conn is one connection to the process's embedded engine. A connection runs
// one statement at a time; Conn serializes its callers.
type Conn struct {
	mu   sync.Mutex
	conn unsafe.Pointer // chdb_connection* (pointer to the handle struct)
}

// Connect opens a connection. args are clickhouse-local style arguments
// such as "--path=/var/lib/auditwatch/chdb" or "--readonly=1"; query-level
// settings given this way apply to this connection only. The engine has one
// data path per process: connections to another path fail until every
// earlier connection is closed.
func Connect(args ...string) (*Conn, error) {
	if err := Load(""); err != nil {
		return nil, err
	}
	argv := append([]string{"clickhouse"}, args...)
	bufs := make([][]byte, len(argv))
	ptrs := make([]*byte, len(argv)+1)
	for i, a := range argv {
		bufs[i] = append([]byte(a), 0)
		ptrs[i] = &bufs[i][0]
	}
	c := cConnect(int32(len(argv)), &ptrs[0])
	runtime.KeepAlive(bufs)
	runtime.KeepAlive(ptrs)
	if c == nil {
		return nil, fmt.Errorf("chdb: connect %q failed (is the data path in use by another process?)", args)
	}
	return &Conn{conn: c}, nil
}

// handle returns the chdb_connection value the query functions take.
func (c *Conn) handle() unsafe.Pointer { return *(*unsafe.Pointer)(c.conn) }

// Query runs one statement and returns its output in the given ClickHouse
// format ("JSONCompact", "TabSeparated", …). SQL may carry inline data after
// FORMAT. params bind {name:Type} placeholders; values use ClickHouse's
// escaped text form (see EscapeParam).
func (c *Conn) Query(sql, format string, params map[string]string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, ErrClosed
	}
	q := []byte(sql)
	if len(q) == 0 {
		return nil, errors.New("chdb: empty query")
	}
	f := []byte(format)
	if len(f) == 0 {
		f = []byte("TabSeparated")
	}
	var res unsafe.Pointer
	if len(params) == 0 {
		res = cQueryN(c.handle(), &q[0], uintptr(len(q)), &f[0], uintptr(len(f)))
	} else {
		n := len(params)
		names := make([]*byte, 0, n)
		nameLens := make([]uintptr, 0, n)
		vals := make([]*byte, 0, n)
		valLens := make([]uintptr, 0, n)
		keep := make([][]byte, 0, 2*n)
		for k, v := range params {
			kb := append([]byte(k), 0)
			vb := append([]byte(v), 0) // never empty, so &vb[0] is valid
			keep = append(keep, kb, vb)
			names = append(names, &kb[0])
			nameLens = append(nameLens, uintptr(len(k)))
			vals = append(vals, &vb[0])
			valLens = append(valLens, uintptr(len(v)))
		}
		res = cQueryWithParams(c.handle(), &q[0], uintptr(len(q)), &f[0], uintptr(len(f)),
			&names[0], &nameLens[0], &vals[0], &valLens[0], uintptr(n))
		runtime.KeepAlive(keep)
		runtime.KeepAlive(names)
		runtime.KeepAlive(vals)
		runtime.KeepAlive(nameLens)
		runtime.KeepAlive(valLens)
	}
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	if res == nil {
		return nil, nil
	}
	defer cDestroyResult(res)
	if e := cString(cResultError(res)); e != "" {
		return nil, &QueryError{Msg: e}
	}
	n := cResultLength(res)
	buf := cResultBuffer(res)
	if n == 0 || buf == nil {
		return nil, nil
	}
	out := make([]byte, n)
	copy(out, unsafe.Slice((*byte)(buf), n))
	return out, nil
}

// insertChunk is the size of the pieces Insert hands to the engine.
const insertChunk = 1 << 20

// Insert runs a streaming INSERT: query is "INSERT INTO t (cols)" without
// FORMAT or data, format names the encoding of data (e.g. "RowBinary"). The
// rows are committed when Insert returns nil.
func (c *Conn) Insert(query, format string, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ErrClosed
	}
	q, f := []byte(query), []byte(format)
	if len(q) == 0 || len(f) == 0 {
		return errors.New("chdb: insert needs a query and a format")
	}
	st := cStreamInsert(c.handle(), &q[0], uintptr(len(q)), &f[0], uintptr(len(f)))
	runtime.KeepAlive(q)
	runtime.KeepAlive(f)
	if st == nil {
		return errors.New("chdb: insert stream could not start")
	}
	defer cDestroyStream(st)
	if e := cString(cStreamError(st)); e != "" {
		return &QueryError{Msg: e}
	}
	for off := 0; off < len(data); off += insertChunk {
		chunk := data[off:min(off+insertChunk, len(data))]
		rc := cStreamAppend(st, unsafe.Pointer(&chunk[0]), uintptr(len(chunk)))
		runtime.KeepAlive(data)
		if rc != 0 {
			if e := cString(cStreamError(st)); e != "" {
				return &QueryError{Msg: e}
			}
			return fmt.Errorf("chdb: insert stream append failed (state %d)", rc)
		}
	}
	res := cStreamDone(st)
	if res == nil {
		if e := cString(cStreamError(st)); e != "" {
			return &QueryError{Msg: e}
		}
		return nil
	}
	defer cDestroyResult(res)
	if e := cString(cResultError(res)); e != "" {
		return &QueryError{Msg: e}
	}
	return nil
}

func cDestroyStream(st unsafe.Pointer) { cStreamDestroy(st) }

// Close closes the connection. Closing the last connection of the process
// shuts the engine down.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		cCloseConn(c.conn)
		c.conn = nil
	}
	return nil
}

// QueryError is an error the engine reported for a statement.
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return "chdb: " + e.Msg }

func cString(p unsafe.Pointer) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// EscapeParam encodes a parameter value in ClickHouse's escaped text form,
// in which the engine reads bound parameters: backslash, tab, newline,
// carriage return and NUL are backslash-escaped so that the value arrives
// byte for byte.
func EscapeParam(v string) string {
	need := false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\', '\t', '\n', '\r', 0, '\b', '\f':
			need = true
		}
	}
	if !need {
		return v
	}
	b := make([]byte, 0, len(v)+8)
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; ch {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case 0:
			b = append(b, '\\', '0')
		default:
			b = append(b, ch)
		}
	}
	return string(b)
}
