package gateway

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
)

// hostsPeer is a remote homeserver named only in a hosts file: the test
// DNS server answers NXDOMAIN for it. Its key server publishes its key;
// other requests (egress deliveries) are recorded and answered with a
// version document.
type hostsPeer struct {
	*testOrigin
	mu    sync.Mutex
	hosts []string // Host headers of the deliveries received
}

func newHostsPeer(t *testing.T, env *egressEnv, host string) *hostsPeer {
	t.Helper()
	p := &hostsPeer{testOrigin: newOrigin(t, env.ca, host)}
	_, port, _ := net.SplitHostPort(p.addr())
	p.name = host + ":" + port // an explicit port: no SRV, and no port 8448 needed
	p.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/_matrix/key/v2/server" {
			doc, err := auth.BuildKeyDocument(p.name, []auth.SigningKey{p.key}, nil, time.Now().Add(24*time.Hour))
			if err != nil {
				t.Error(err)
			}
			w.Write(doc)
			return
		}
		p.mu.Lock()
		p.hosts = append(p.hosts, r.Host)
		p.mu.Unlock()
		io.WriteString(w, `{"server":{"name":"peer","version":"1"}}`)
	})
	return p
}

func writeHosts(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as editors and docker replace it
		t.Fatal(err)
	}
}

// inbound sends a signed transaction from p to the gateway's federation
// listener and returns the status and body.
func (env *egressEnv) inboundFrom(t *testing.T, o *testOrigin, txn string) (int, string) {
	t.Helper()
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: env.ca.Pool(), ServerName: "gw.test"}},
		Timeout:   20 * time.Second,
	}
	defer client.CloseIdleConnections()
	target := "/_matrix/federation/v1/send/" + txn
	body := `{"origin":"` + o.name + `","origin_server_ts":1,"pdus":[]}`
	req, _ := http.NewRequest(http.MethodPut, "https://"+env.fedAddr+target, strings.NewReader(body))
	k, v, _ := strings.Cut(o.sign(http.MethodPut, target, "gw.test", body), ": ")
	req.Header.Set(k, v)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deliver sends GET version to destination through the egress (worker
// proxy protocol) and returns the status and body.
func (env *egressEnv) deliver(t *testing.T, destination string) (int, string) {
	t.Helper()
	const target = "/_matrix/federation/v1/version"
	resp := env.worker("GET", destination, target, "", bearer(testSecret), env.sign("GET", target, destination, ""))
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostsFilePeer: a peer that only the hosts file names federates in
// both directions: its inbound request is verified with the key fedgate
// fetched from the hosts file's address, and the egress delivers to it.
func TestHostsFilePeer(t *testing.T) {
	t.Parallel()
	hosts := filepath.Join(t.TempDir(), "hosts")
	writeHosts(t, hosts, "127.0.0.1 localhost\n127.0.0.1 peer.test # not in DNS\n")
	env := startEgress(t, egressOptions{loopbackAllowed: true, outbound: fmt.Sprintf("hosts_file = %q", hosts)})
	peer := newHostsPeer(t, env, "peer.test")

	status, body := env.inboundFrom(t, peer.testOrigin, "t1")
	if status != http.StatusOK || peer.fetches.Load() == 0 {
		t.Fatalf("inbound from %s: %d %s (key fetches %d)", peer.name, status, body, peer.fetches.Load())
	}
	status, body = env.deliver(t, peer.name)
	if status != http.StatusOK || !strings.Contains(body, `"peer"`) {
		t.Fatalf("egress to %s: %d %s", peer.name, status, body)
	}
	peer.mu.Lock()
	got := strings.Join(peer.hosts, ",")
	peer.mu.Unlock()
	if got != peer.name {
		t.Fatalf("peer saw Host %q, want %q", got, peer.name)
	}
	if n := env.dns.CountQueries("peer.test", "A") + env.dns.CountQueries("peer.test", "AAAA"); n != 0 {
		t.Fatalf("%d address questions for peer.test went to DNS", n)
	}

	// A peer added to the file later is reached without a restart.
	late := newHostsPeer(t, env, "late.test")
	if status, body := env.deliver(t, late.name); status != http.StatusBadGateway || !strings.Contains(body, "dns_failed") {
		t.Fatalf("before the edit: %d %s", status, body)
	}
	writeHosts(t, hosts, "127.0.0.1 localhost\n127.0.0.1 peer.test late.test\n")
	deadline := time.Now().Add(10 * time.Second)
	for {
		env.clock.Advance(10 * time.Minute) // past the egress backoff of the failure
		status, body := env.deliver(t, late.name)
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edited hosts file was never used: %d %s", status, body)
		}
		time.Sleep(100 * time.Millisecond) // the file is checked once a second
	}
	if status, body := env.inboundFrom(t, late.testOrigin, "t2"); status != http.StatusOK {
		t.Fatalf("inbound from %s after the edit: %d %s", late.name, status, body)
	}
}

// TestHostsFileGuarded: a hosts file entry in a loopback (or any private)
// range is refused by the SSRF guard like a DNS answer when
// outbound.allow_networks does not list it: the key fetch fails and the
// inbound request gets 401, the egress answers 502 ssrf_blocked, and the
// peer is never contacted.
func TestHostsFileGuarded(t *testing.T) {
	t.Parallel()
	hosts := filepath.Join(t.TempDir(), "hosts")
	writeHosts(t, hosts, "127.0.0.1 peer.test\n")
	env := startEgress(t, egressOptions{outbound: fmt.Sprintf("hosts_file = %q", hosts)})
	peer := newHostsPeer(t, env, "peer.test")

	if status, body := env.inboundFrom(t, peer.testOrigin, "t1"); status != http.StatusUnauthorized || !strings.Contains(body, "Could not get the signing keys") {
		t.Fatalf("inbound: %d %s", status, body)
	}
	if status, body := env.deliver(t, peer.name); status != http.StatusBadGateway || !strings.Contains(body, "ssrf_blocked") {
		t.Fatalf("egress: %d %s", status, body)
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if peer.fetches.Load() != 0 || len(peer.hosts) != 0 {
		t.Fatalf("the peer was contacted: %d key fetches, deliveries %v", peer.fetches.Load(), peer.hosts)
	}
}
