package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Response is the homeserver's answer. Its Body must always be closed:
// a body read to its end has already given its connection back to the
// pool (Close is then a no-op); one closed earlier closes the connection.
type Response struct {
	// StatusCode is the final status (interim 1xx answers are skipped).
	StatusCode int
	// Header holds the response's end-to-end fields; hop-by-hop ones are
	// removed. Content-Length is kept when the homeserver sent one.
	Header http.Header
	// ContentLength is the body's length, -1 when unknown (chunked or
	// delimited by the connection closing).
	ContentLength int64
	// Body streams the response body.
	Body *Body

	// keepAlive reports whether the connection may carry another request
	// once the body is read to its end.
	keepAlive bool
	// chunked marks a chunked body, whose trailer net/http reads at its
	// end.
	chunked bool
	src     io.ReadCloser // net/http's framed body reader
}

// readResponse reads one response head from br with net/http's parser and
// sets up its body framing for a request with method.
func readResponse(br *bufio.Reader, method string) (*Response, error) {
	var req *http.Request // nil reads the response as one to a GET
	if method == http.MethodHead {
		req = &http.Request{Method: http.MethodHead} // no body follows
	}
	hr, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if hr.StatusCode < 100 || hr.StatusCode > 999 {
		// hr.Body is left alone: closing it would read the rest.
		return nil, fmt.Errorf("malformed HTTP status code %d", hr.StatusCode)
	}
	if hr.StatusCode < 200 {
		return &Response{StatusCode: hr.StatusCode}, nil
	}
	chunked := len(hr.TransferEncoding) > 0
	stripHopByHop(hr.Header)
	return &Response{
		StatusCode:    hr.StatusCode,
		Header:        hr.Header,
		ContentLength: hr.ContentLength,
		// A body delimited by the connection closing ends the
		// connection too; so does "Connection: close" or HTTP/1.0
		// without keep-alive (hr.Close).
		keepAlive: !hr.Close && (hr.ContentLength >= 0 || chunked || hr.Body == http.NoBody),
		chunked:   chunked,
		src:       hr.Body,
	}, nil
}

// Body is a response body. Reads fail with an *[Error] of kind
// [BodyBroken] when the body breaks off. It is not safe for concurrent
// use.
type Body struct {
	m    *Member
	c    *conn // nil once released
	resp *Response
	stop func() bool // stops the caller's cancellation watch
	read int64
	err  error // sticky: io.EOF or an *Error
}

// Read reads the body. Each read that has to wait for the network may
// wait at most the member's BodyTimeout.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.c.br.Buffered() == 0 {
		if err := b.c.nc.SetReadDeadline(time.Now().Add(b.m.opts.BodyTimeout)); err != nil {
			b.fail(err)
			return 0, b.err
		}
	}
	n, err := b.resp.src.Read(p)
	b.read += int64(n)
	switch {
	case err == io.EOF:
		b.finish()
	case err != nil:
		b.fail(err)
	}
	return n, b.err
}

// finish ends a body read to its end: the connection goes back to the
// pool when the response allows it.
func (b *Body) finish() {
	b.err = io.EOF
	c := b.c
	b.c = nil
	watched := b.stop == nil || b.stop()
	if b.resp.keepAlive && watched && c.br.Buffered() == 0 {
		b.m.put(c, time.Now())
		return
	}
	c.close()
}

// fail ends a body that broke off.
func (b *Body) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	b.err = &Error{Kind: BodyBroken, Member: b.m.redacted, Written: true, Err: err}
	if b.stop != nil {
		b.stop()
	}
	b.c.close()
	b.c = nil
}

// Close releases the body. A body not read to its end closes its
// connection (the rest would have to be read before another request).
func (b *Body) Close() error {
	if b.c != nil {
		if b.stop != nil {
			b.stop()
		}
		b.c.close()
		b.c = nil
		if b.err == nil {
			b.err = errBodyClosed
		}
	}
	return nil
}

var errBodyClosed = errors.New("body closed")

// Done reports whether the body was read to its end.
func (b *Body) Done() bool { return b.err == io.EOF }

// buffered reports whether more of the body was already received and
// waits to be read (no network wait needed for it).
func (b *Body) buffered() bool { return b.c != nil && b.c.br.Buffered() > 0 }

// ReadAll reads the whole body, which must not be longer than limit
// bytes; a longer one fails with [ErrBodyTooLarge] (and a body that
// announces more than limit fails before anything is read).
func (b *Body) ReadAll(limit int64) ([]byte, error) {
	if cl := b.resp.ContentLength; cl > limit {
		b.Close()
		return nil, ErrBodyTooLarge
	}
	var buf []byte
	if cl := b.resp.ContentLength; cl >= 0 {
		buf = make([]byte, 0, cl)
	} else {
		buf = make([]byte, 0, 512)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := b.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			b.Close()
			return nil, ErrBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// StreamTo copies the body to w as it arrives, through a pooled buffer.
// flush (may be nil) is called whenever everything received so far has
// been written to w and more is to come, so a slow or streaming response
// reaches the remote server without delay while a response already at
// hand leaves in as few writes as possible. Read failures are *[Error]
// (BodyBroken); any other error is w's.
func (b *Body) StreamTo(w io.Writer, flush func() error) (int64, error) {
	bp := b.m.getCopyBuffer()
	defer b.m.putCopyBuffer(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := b.Read(buf)
		if n > 0 {
			k, werr := w.Write(buf[:n])
			written += int64(k)
			if werr == nil && k < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
		if flush != nil && !b.buffered() {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
}
