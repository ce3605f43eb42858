//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package upstream

// peekSocket cannot look at the socket here: an idle connection is taken
// as usable, and a broken one is replaced by RoundTrip's retry.
func (c *conn) peekSocket(fd uintptr) { c.peekOK = true }
