package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"syscall"
	"time"
)

// conn is one connection to the homeserver, used by one exchange at a
// time.
type conn struct {
	m   *Member
	nc  net.Conn        // what requests are written to: TCP or TLS
	raw syscall.RawConn // the TCP socket, for the idle check; may be nil
	br  *bufio.Reader   // reads c, which counts a response head's bytes
	tcp bool            // nc is plain TCP: a request leaves in one writev

	// limit is how many more bytes Read may return; a response head may
	// not use more than MaxHeaderBytes.
	limit     int64
	wbuf      []byte      // the request head (and, over TLS, the body)
	bufs      net.Buffers // head and body for writev
	vec       [2][]byte
	idleSince time.Time
	peek      func(fd uintptr) // the idle check, made once per connection
	peekOK    bool
}

// dial opens a new connection, TLS included, within DialTimeout.
func (m *Member) dial(ctx context.Context) (*conn, error) {
	m.dials.Add(1)
	ctx, cancel := context.WithTimeout(ctx, m.opts.DialTimeout)
	defer cancel()
	nc, err := m.dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return nil, err
	}
	c := &conn{m: m, nc: nc, limit: math.MaxInt64}
	if tc, ok := nc.(*net.TCPConn); ok {
		c.raw, _ = tc.SyscallConn()
		c.tcp = m.tls == nil
	}
	if m.tls != nil {
		tc := tls.Client(nc, m.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		c.nc = tc
	}
	c.br = bufio.NewReaderSize(c, readBufferSize)
	c.peek = c.peekSocket
	return c, nil
}

// Read is the bufio.Reader's source: the connection, with the head limit.
func (c *conn) Read(p []byte) (int, error) {
	if c.limit <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.nc.Read(p)
	c.limit -= int64(n)
	return n, err
}

func (c *conn) close() { c.nc.Close() }

// idleAlive reports whether a pooled connection can carry a request: the
// homeserver has neither closed it nor sent anything since the last
// response (a late byte, or a TLS alert, means it is not in step).
func (c *conn) idleAlive() bool {
	if c.raw == nil {
		return true
	}
	c.peekOK = false
	if c.raw.Control(c.peek) != nil {
		return false
	}
	return c.peekOK
}

// writeRequest writes req in one piece: over plain TCP the head and the
// body leave in one writev, over TLS in one buffer (up to
// maxKeptWriteBuffer, else head and body). It returns whether any byte
// was accepted.
func (c *conn) writeRequest(req *Request, host string) (written bool, err error) {
	c.wbuf = appendHead(c.wbuf[:0], req, host)
	body := req.Body
	var n int64
	switch {
	case len(body) == 0:
		var k int
		k, err = c.nc.Write(c.wbuf)
		n = int64(k)
	case c.tcp:
		c.vec[0], c.vec[1] = c.wbuf, body
		c.bufs = c.vec[:]
		n, err = c.bufs.WriteTo(c.nc)
		c.vec[1] = nil // the caller's body
	case len(c.wbuf)+len(body) <= maxKeptWriteBuffer:
		c.wbuf = append(c.wbuf, body...)
		var k int
		k, err = c.nc.Write(c.wbuf)
		n = int64(k)
	default:
		var k int
		if k, err = c.nc.Write(c.wbuf); err == nil {
			var k2 int
			k2, err = c.nc.Write(body)
			k += k2
		}
		n = int64(k)
	}
	if cap(c.wbuf) > maxKeptWriteBuffer {
		c.wbuf = nil
	}
	return n > 0, err
}

// readHead reads the response head, skipping interim 1xx responses. The
// caller has set the deadline. got reports whether any byte of a response
// arrived, which tells a broken connection from a bad response.
func (c *conn) readHead(method string) (resp *Response, got bool, err error) {
	c.limit = MaxHeaderBytes
	defer func() {
		got = c.limit < MaxHeaderBytes
		c.limit = math.MaxInt64
	}()
	for {
		resp, err := readResponse(c.br, method)
		if err != nil {
			return nil, false, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, false, errUpgrade
		}
		if resp.StatusCode >= 200 {
			return resp, false, nil
		}
		// 100 Continue, 103 Early Hints: nothing to relay; the final
		// response follows.
	}
}

// classifyHeadErr turns an error from reading the head into its Kind:
// nothing at all received means the connection broke (or timed out)
// before the response; anything else is a bad response.
func classifyHeadErr(err error, gotBytes bool) Kind {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return HeaderTimeout
	case errors.Is(err, errHeadTooLarge), errors.Is(err, errUpgrade):
		return BadResponse
	case !gotBytes && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || isNetOpError(err)):
		return NoResponse
	}
	return BadResponse
}

func isNetOpError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}
