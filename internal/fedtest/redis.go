package fedtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/procstat"
)

// RedisInstall is how CI gets redis-server (Debian's package).
const RedisInstall = "apt-get install -y redis-server"

// RedisBinary returns the path of redis-server: $REDIS_SERVER_BIN,
// redis-server on PATH, or /usr/bin/redis-server. Without one it skips
// the test, or fails it when FEDGATE_REQUIRE_REDIS=1 (as in CI).
func RedisBinary(t testing.TB) string {
	t.Helper()
	if p := lookupRedis(); p != "" {
		return p
	}
	if os.Getenv("FEDGATE_REQUIRE_REDIS") == "1" {
		t.Fatalf("FEDGATE_REQUIRE_REDIS=1 but redis-server is not installed; install it with %s", RedisInstall)
	}
	t.Skipf("redis-server not installed (%s); skipping this cluster-mode test", RedisInstall)
	return ""
}

// RedisAvailable reports whether a test that can do without Redis should
// use it: redis-server is installed, or FEDGATE_REQUIRE_REDIS=1 requires
// it (StartRedis then fails when it is missing).
func RedisAvailable() bool {
	return lookupRedis() != "" || os.Getenv("FEDGATE_REQUIRE_REDIS") == "1"
}

func lookupRedis() string {
	if p := os.Getenv("REDIS_SERVER_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	if st, err := os.Stat("/usr/bin/redis-server"); err == nil && !st.IsDir() {
		return "/usr/bin/redis-server"
	}
	return ""
}

// Redis is a redis-server run by a test on 127.0.0.1, without
// persistence, in a temporary folder. Kill and Start let a test take it
// away and bring it back on the same address.
type Redis struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// URL is "redis://127.0.0.1:port/0".
	URL string

	t      testing.TB
	binary string
	dir    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *SyncBuffer
}

// StartRedis runs redis-server until the test ends and returns once it
// answers PING. Its output is logged if the test fails.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, binary: RedisBinary(t), dir: t.TempDir(), out: &SyncBuffer{}}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", r.out.String())
		}
	})
	// FreeAddr's port is free when it returns, but another test may take
	// it before redis-server binds it (as the local port of a connection,
	// or for its own redis-server): then try another.
	for attempt := 1; ; attempt++ {
		r.Addr = FreeAddr(t)
		r.URL = "redis://" + r.Addr + "/0"
		err := r.start()
		if err == nil {
			return r
		}
		if !errors.Is(err, errAddrInUse) || attempt == 5 {
			t.Fatal(err)
		}
	}
}

// errAddrInUse: redis-server could not bind its address.
var errAddrInUse = errors.New("address already in use")

// Start starts the server (again, after Kill) and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.binary,
		"--port", port, "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = r.out, r.out
	before := len(r.out.String())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for !r.serves() {
		select {
		case <-exited:
			r.mu.Lock()
			r.cmd = nil
			r.mu.Unlock()
			out := r.out.String()
			if strings.Contains(out[before:], "Address already in use") {
				return fmt.Errorf("redis-server on %s: %w", r.Addr, errAddrInUse)
			}
			return fmt.Errorf("redis-server exited early:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer within 15s:\n%s", r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// serves reports whether the server answering on r.Addr is this one, run
// in r's folder: when this one could not bind its address, another
// test's redis-server may be answering there.
func (r *Redis) serves() bool {
	dir, err := filepath.EvalSymlinks(r.dir) // redis-server reports its working folder
	if err != nil {
		return false
	}
	// *2, $3, dir, $<length>, the folder
	lines := r.DoLines("CONFIG GET dir", 5)
	return len(lines) == 5 && lines[0] == "*2" && lines[2] == "dir" && lines[4] == dir
}

// Kill stops the server with SIGKILL (no shutdown, as a crash) and waits
// for it to exit. Killing a stopped server does nothing.
func (r *Redis) Kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Ping reports whether the server answers PING now.
func (r *Redis) Ping() bool {
	return r.Do("PING") == "+PONG"
}

// Do sends one inline command (words separated by spaces) and returns the
// first line of the reply ("" if the server does not answer): enough for
// tests to inspect or flush the server without a client library.
func (r *Redis) Do(command string) string {
	if lines := r.DoLines(command, 1); len(lines) == 1 {
		return lines[0]
	}
	return ""
}

// DoLines sends one inline command as Do does and returns the first n
// lines of the reply, without their line ends: "*2", "$3", "dir", ... for
// an array. It returns fewer when the server stops answering (none when
// it does not answer at all).
func (r *Redis) DoLines(command string, n int) []string {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		return nil
	}
	br := bufio.NewReader(c)
	lines := make([]string, 0, n)
	for range n {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
	}
	return lines
}

// CPU returns the CPU time (user and system) the running server has used,
// from /proc/<pid>/stat (Linux; a benchmark reports it per operation). The
// unit is the kernel's clock tick, 10ms, so measure over seconds.
func (r *Redis) CPU() (time.Duration, error) {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil {
		return 0, errors.New("redis-server is not running")
	}
	d, err := procstat.CPU(cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("redis-server: %w", err)
	}
	return d, nil
}
