// Package procstat reads a process's CPU time from Linux's /proc, for the
// load tool and the tests that count what a process (fedgate, nginx,
// redis-server) spent. It imports only the standard library.
package procstat
