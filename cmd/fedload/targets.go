package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// serverName is the server fedgate fronts in a fedload run, and the name
// on every proxy's certificate.
const serverName = "fedload.test"

// target is one thing requests are sent to: the upstream directly, or a
// proxy process in front of it.
type target struct {
	name string
	base string // "https://127.0.0.1:port" or "http://..."
	pid  int    // 0: no process of its own (direct)
	// fedgate marks fedgate processes; logMode is how theirs writes its
	// access log.
	fedgate bool
	logMode logMode
	cmd     *exec.Cmd
	log     *os.File
	// exited is closed when the process has ended.
	exited chan struct{}
	// side are processes the target depends on whose CPU is counted
	// apart (redis-server for fedgate in cluster mode).
	side []int
}

// stop ends the target's process (SIGTERM, then SIGKILL after 10 s).
func (t *target) stop() {
	if t.cmd == nil || t.cmd.Process == nil {
		return
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(10 * time.Second):
		t.cmd.Process.Kill()
		<-t.exited
	}
	if t.log != nil {
		t.log.Close()
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// env is the state of one run shared by the targets' configurations.
type env struct {
	dir      string
	ca       *fedtest.CA
	origins  []*origin
	upstream *upstream
	certFile string
	keyFile  string
	caFile   string
}

func newEnv(dir string, nOrigins int) (*env, error) {
	ca, err := fedtest.GenerateCA("fedload test CA", 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, ca: ca,
		certFile: filepath.Join(dir, "proxy.pem"), keyFile: filepath.Join(dir, "proxy.key"), caFile: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(e.caFile, ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := ca.WriteLeaf(e.certFile, e.keyFile, serverName, "127.0.0.1"); err != nil {
		return nil, err
	}
	if e.origins, err = startOrigins(ca, nOrigins, "origins.fedload.test"); err != nil {
		return nil, err
	}
	// The upstream's stand-in key document has the size of fedgate's.
	stand, _ := auth.GenerateSigningKey("stand_in")
	doc, err := auth.BuildKeyDocument(serverName, []auth.SigningKey{stand}, nil, time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	if e.upstream, err = startUpstream(doc); err != nil {
		stopOrigins(e.origins)
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	e.upstream.stop()
	stopOrigins(e.origins)
}

// fedgateTOML is the configuration fedload gives fedgate: its upstream,
// the origins through [outbound.overrides] with fedload's CA, and limits
// high enough that one loopback peer can load it.
func (e *env) fedgateTOML(name string, port, adminPort int, mode logMode, clusterTOML string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by fedload for one load run.
server_name = %q
data_dir = %q

[upstream]
url = "http://%s"
max_idle_conns = 512

[listen]
federation = ["127.0.0.1:%d"]
admin = "127.0.0.1:%d"

[tls]
mode = "files"
cert_file = %q
key_file = %q

[well_known]
server = "%s:443"

[keys]
signing_key = %q
generate = true

[log]
level = "warn"
access = %t
access_buffer = %q

[rate_limit]
per_ip = { rate = "10000000/s", burst = 10000000 }
per_origin = { rate = "10000000/s", burst = 10000000 }
concurrent_per_origin = 100000

[outbound]
ca_file = %q

[outbound.overrides]
`, serverName, filepath.Join(e.dir, name+"-data"), e.upstream.addr, port, adminPort, e.certFile, e.keyFile, serverName,
		filepath.Join(e.dir, "fedgate-data", "signing.key"), mode != logOff, mode.accessBuffer(), e.caFile)
	for _, o := range e.origins {
		fmt.Fprintf(&b, "%q = %q\n", o.name, o.addr)
	}
	b.WriteString(clusterTOML)
	return b.String()
}

// startFedgate runs "fedgate run" on a generated configuration, as the
// target called name (its configuration is name.toml, its data folder
// name-data; the signing key in fedgate-data is shared).
func (e *env) startFedgate(name, bin string, mode logMode) (*target, int, error) {
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "fedgate-data"), 0o700); err != nil {
		return nil, 0, err
	}
	cfg := filepath.Join(e.dir, name+".toml")
	if err := os.WriteFile(cfg, []byte(e.fedgateTOML(name, port, admin, mode, "")), 0o600); err != nil {
		return nil, 0, err
	}
	t, err := e.spawn(name, port, bin, "run", "-config", cfg)
	if t != nil {
		t.fedgate, t.logMode = true, mode
	}
	return t, admin, err
}

// startFedgateCluster runs a second fedgate with [cluster] pointing at
// redis (a redis-server fedload started), as target name (the base target's name + "+redis");
// redis-server's CPU is counted as the target's side CPU.
func (e *env) startFedgateCluster(name, bin string, mode logMode, redis *redisServer) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cluster := fmt.Sprintf("\n[cluster]\nredis = \"redis://%s/0\"\nprefix = \"fedload:\"\nnode = \"fedload\"\n", redis.addr)
	cfg := filepath.Join(e.dir, name+".toml")
	if err := os.WriteFile(cfg, []byte(e.fedgateTOML(name, port, admin, mode, cluster)), 0o600); err != nil {
		return nil, err
	}
	t, err := e.spawn(name, port, bin, "run", "-config", cfg)
	if err != nil {
		return nil, err
	}
	t.fedgate, t.logMode = true, mode
	t.side = []int{redis.cmd.Process.Pid}
	return t, nil
}

// redisServer is a redis-server fedload runs for -cluster, without
// persistence, on loopback.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

// startRedis runs bin on a free loopback port and waits until it answers.
func (e *env) startRedis(bin string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.dir, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(e.dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	r := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "PING\r\n")
			buf := make([]byte, 7)
			n, _ := io.ReadFull(c, buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer within 10s", r.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *redisServer) stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// startCaddy runs Caddy as a TLS reverse proxy to the upstream.
func (e *env) startCaddy(bin string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(e.dir, "Caddyfile")
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https disable_redirects
	storage file_system %q
}
https://%s:%d {
	tls %q %q
	reverse_proxy %s
}
`, filepath.Join(e.dir, "caddy-data"), serverName, port, e.certFile, e.keyFile, e.upstream.addr)
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	return e.spawn("caddy", port, bin, "run", "--config", cfg, "--adapter", "caddyfile")
}

// startNginx runs nginx as a TLS reverse proxy to the upstream, with
// keep-alive to it, two workers, no access log, and buffers large enough
// that no request or response body goes through a temporary file.
func (e *env) startNginx(bin string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(e.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`user root root;
worker_processes 2;
worker_rlimit_nofile 8192;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream homeserver { server %[2]s; keepalive 128; }
	server {
		listen 127.0.0.1:%[3]d ssl;
		server_name %[4]s;
		ssl_certificate %[5]s;
		ssl_certificate_key %[6]s;
		client_max_body_size 8m;
		client_body_buffer_size 1m;
		proxy_buffers 16 32k;
		location / {
			proxy_pass http://homeserver;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
		}
	}
}
`, prefix, e.upstream.addr, port, serverName, e.certFile, e.keyFile)
	cfg := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return e.spawn("nginx", port, bin, "-p", prefix, "-c", cfg, "-g", "daemon off;")
}

// spawn starts a proxy process and waits until it answers on port.
func (e *env) spawn(name string, port int, bin string, args ...string) (*target, error) {
	logf, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = e.dir
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	t := &target{name: name, base: fmt.Sprintf("https://127.0.0.1:%d", port), pid: cmd.Process.Pid, cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(t.exited) }()
	if err := e.waitReady(t); err != nil {
		t.stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("%s did not become ready: %w\n%s", name, err, tail(log, 2000))
	}
	return t, nil
}

// waitReady polls the target's well-known endpoint until it answers.
func (e *env) waitReady(t *target) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), ServerName: serverName}}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", t.base+"/.well-known/matrix/server", nil)
		req.Host = serverName
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-t.exited:
			return errors.New("the process exited")
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
