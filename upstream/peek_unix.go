//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package upstream

import "syscall"

// peekSocket looks at an idle connection's socket without waiting: no
// data and no end of stream (EAGAIN) means it is still usable. Anything
// else (bytes, EOF, an error) means it is not.
func (c *conn) peekSocket(fd uintptr) {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
