package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestMultiReloadAddsAndRemoves: a reload adds a third hosted server and
// later removes one, while requests for the others are in flight; those
// finish normally, the kept servers keep their limiter state, and a
// reload the configuration refuses changes nothing.
func TestMultiReloadAddsAndRemoves(t *testing.T) {
	env := startMulti(t, multiOptions{origins: []string{"origin.test"}})
	o := env.origins[0]
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // a failing test must not leave b's homeserver waiting
	arrived := make(chan struct{}, 4)
	B := env.servers["b.test"].hs
	B.Handle(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"slow":true}`)
	})
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Ab.test"
	inFlight := func() chan string {
		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest("GET", "https://"+env.addr+"/", nil)
			path, query, _ := strings.Cut(target, "?")
			req.URL.Opaque, req.URL.RawQuery = path, query
			req.Host = "b.test"
			k, v, _ := strings.Cut(o.sign("GET", target, "b.test", ""), ": ")
			req.Header.Set(k, v)
			resp, err := env.client("b.test").Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprintf("%d %s", resp.StatusCode, body)
		}()
		<-arrived
		return done
	}
	stateOf := func(name string) *hostedState {
		rt := env.gw.rt.Load()
		if i := rt.hosted.Lookup(name); i >= 0 {
			return rt.servers[i].state
		}
		return nil
	}
	aState, bState := stateOf("a.test"), stateOf("b.test")

	// Add c while a request for b is in flight.
	done := inFlight()
	if err := env.reload(multiOptions{names: []string{"a.test", "b.test", "c.test"}}); err != nil {
		t.Fatal(err)
	}
	resp := env.signed(o, "c.test", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Ac.test", "")
	if resp.StatusCode != 200 || len(env.servers["c.test"].hs.Requests()) != 1 {
		t.Fatalf("c after the reload: %d", resp.StatusCode)
	}
	resp = env.do("c.test", "c.test", "GET", "/_matrix/key/v2/server", "")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(body), `"server_name":"c.test"`) {
		t.Fatalf("c's key document: %d %s", resp.StatusCode, body)
	}
	release <- struct{}{}
	if got := <-done; got != `200 {"slow":true}` {
		t.Fatalf("the request in flight for b: %s", got)
	}
	if stateOf("a.test") != aState || stateOf("b.test") != bState {
		t.Fatal("a reload replaced the state (policy engine, limiters) of servers it kept")
	}

	// A configuration that cannot be used changes nothing: c delegated to
	// b's name.
	bad := multiOptions{names: []string{"a.test", "b.test", "c.test"}, perServer: func(i int, section func(string) string) string {
		if i == 2 {
			return section("well_known") + "\nserver = \"b.test:443\"\n"
		}
		return ""
	}}
	if err := env.reload(bad); err == nil {
		t.Fatal("a configuration with c delegated to b's name was accepted")
	}
	if len(env.gw.rt.Load().servers) != 3 {
		t.Fatal("a refused reload changed the hosted servers")
	}

	// Remove b while a request for it is in flight.
	done = inFlight()
	if err := env.reload(multiOptions{names: []string{"a.test", "c.test"}}); err != nil {
		t.Fatal(err)
	}
	resp = env.signed(o, "b.test", "GET", target, "")
	matrixError(t, resp, 401, "M_UNAUTHORIZED")
	releaseAll()
	if got := <-done; got != `200 {"slow":true}` {
		t.Fatalf("the request in flight for the removed b: %s", got)
	}
	if stateOf("a.test") != aState {
		t.Fatal("removing b replaced a's state")
	}
	select {
	case <-bState.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the removed server's policy engine still runs")
	}

	// Metrics count requests per hosted server; b's series are gone.
	perServer := map[string]float64{}
	families, err := env.gw.metrics.registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "fedgate_gateway_server_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			perServer[label(m, "server")+"/"+label(m, "direction")+"/"+label(m, "decision")] += m.GetCounter().GetValue()
		}
	}
	if perServer["c.test/inbound/forwarded"] != 1 || perServer["c.test/inbound/local"] != 1 {
		t.Errorf("c's requests: %v", perServer)
	}
	for k := range perServer {
		if strings.HasPrefix(k, "b.test/") {
			t.Errorf("series of the removed b remain: %s", k)
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
