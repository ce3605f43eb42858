package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFailoverNotSent: a member that refuses connections costs nothing
// but a connect: every request, whatever its method, goes to the other
// member, and the refusing member is then skipped without a connect.
func TestFailoverNotSent(t *testing.T) {
	hs, urls := startWorkers(t, 1)
	dead := deadURL(t)
	var changes []Change
	tr := NewTracker(TrackerOptions{OnChange: func(c Change) { changes = append(changes, c) }})
	s := buildSet(t, SetOptions{URLs: []string{dead, urls[0]}}, tr)
	claim := endpoint(t, "user_keys_claim", "POST") // not repeatable
	x, body, err := call(t, s, claim, "a.test", "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{}}`)
	if err != nil || string(body) != "{}" {
		t.Fatalf("%v %s", err, body)
	}
	// Round robin starts at member 1 on the first turn; make sure the dead
	// member was tried by sending until a failover happened.
	for i := 0; !x.Failover && i < 4; i++ {
		x, _, err = call(t, s, claim, "a.test", "POST", "/_matrix/federation/v1/user/keys/claim", `{}`)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !x.Failover || x.Member != 1 {
		t.Fatalf("no failover: %+v", x)
	}
	st := s.Status()[0]
	if st.Members[0].State != Down || st.Members[0].Failovers != 1 || st.Members[0].Errors[NotSent] != 1 {
		t.Fatalf("dead member: %+v", st.Members[0])
	}
	if len(changes) != 1 || changes[0].Up || changes[0].URL != dead || !strings.Contains(changes[0].Reason, "not sent") {
		t.Fatalf("changes %+v", changes)
	}
	dials := st.Members[0].Conns.Dials
	for range 20 {
		if x, _, err := call(t, s, claim, "a.test", "POST", "/_matrix/federation/v1/user/keys/claim", `{}`); err != nil || x.Member != 1 {
			t.Fatalf("%v %+v", err, x)
		}
	}
	if d := s.Status()[0].Members[0].Conns.Dials; d != dials {
		t.Fatalf("the down member was dialled %d more times", d-dials)
	}
	// The request arrived whole, once per call, on the live member.
	got := hs[0].Requests()
	if len(got) < 21 || got[0].Method != "POST" || got[0].RequestURI != "/_matrix/federation/v1/user/keys/claim" {
		t.Fatalf("requests %+v", got[0])
	}
}

// hangUpAfterRequest is a member that reads a request and closes the
// connection without answering (a worker that crashed while handling
// it); it counts the requests.
func hangUpAfterRequest(t *testing.T, n *atomic.Int32) string {
	return scripted(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		n.Add(1)
	})
}

// TestFailoverNoResponse: a member that breaks the connection after the
// request was sent gets a repeatable request (/send, a GET) sent to
// another member, never one that is not (a key claim).
func TestFailoverNoResponse(t *testing.T) {
	hs, urls := startWorkers(t, 1)
	var broken atomic.Int32
	crash := hangUpAfterRequest(t, &broken)
	send := endpoint(t, "send", "PUT")
	claim := endpoint(t, "user_keys_claim", "POST")
	state := endpoint(t, "state", "GET")
	for _, tt := range []struct {
		ep         string
		method     string
		target     string
		body       string
		repeatable bool
	}{
		{send.Name, "PUT", "/_matrix/federation/v1/send/txn1", `{"pdus":[]}`, true},
		{state.Name, "GET", "/_matrix/federation/v1/state/%21r%3Ax?event_id=%24e", "", true},
		{claim.Name, "POST", "/_matrix/federation/v1/user/keys/claim", `{}`, false},
	} {
		t.Run(tt.ep, func(t *testing.T) {
			hs[0].Reset()
			broken.Store(0)
			// The crashing member alone first, so it is surely tried.
			s := buildSet(t, SetOptions{URLs: []string{crash, urls[0]}, Balance: Origin}, nil)
			ep := endpoint(t, tt.ep, tt.method)
			var x Exchange
			var err error
			for i := 0; i < 50 && broken.Load() == 0; i++ {
				x, _, err = call(t, s, ep, originNames(50)[i], tt.method, tt.target, tt.body)
			}
			if broken.Load() != 1 {
				t.Fatalf("the crashing member saw %d requests", broken.Load())
			}
			if !tt.repeatable {
				if kindOf(err) != NoResponse {
					t.Fatalf("non-repeatable request: %v %+v", err, x)
				}
				return
			}
			if err != nil || !x.Failover {
				t.Fatalf("%v %+v", err, x)
			}
			got := hs[0].Requests()
			last := got[len(got)-1]
			if last.RequestURI != tt.target || string(last.Body) != tt.body || last.Method != tt.method {
				t.Fatalf("the second member got %s %s %q", last.Method, last.RequestURI, last.Body)
			}
		})
	}
}

// TestNoFailoverAfterHead: a member that answers slowly (header timeout)
// or with garbage is not asked again elsewhere; it is marked down.
func TestNoFailoverAfterHead(t *testing.T) {
	_, urls := startWorkers(t, 1)
	var slowSeen atomic.Int32
	slow := scripted(t, func(c net.Conn) {
		readRequestHead(bufio.NewReader(c))
		slowSeen.Add(1)
		time.Sleep(time.Second)
	})
	garbage := scripted(t, func(c net.Conn) {
		readRequestHead(bufio.NewReader(c))
		io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
	})
	get := endpoint(t, "version", "GET")
	for _, tt := range []struct {
		name string
		url  string
		kind Kind
	}{{"slow", slow, HeaderTimeout}, {"garbage", garbage, BadResponse}} {
		t.Run(tt.name, func(t *testing.T) {
			s := buildSet(t, SetOptions{URLs: []string{tt.url, urls[0]}, Member: Options{HeaderTimeout: 300 * time.Millisecond}}, nil)
			var err error
			for i := 0; i < 4 && err == nil; i++ {
				_, _, err = call(t, s, get, "", "GET", "/_matrix/federation/v1/version", "")
			}
			if kindOf(err) != tt.kind {
				t.Fatalf("error %v, want %v", err, tt.kind)
			}
			if st := s.Status()[0].Members[0]; st.State != Down || st.Failovers != 0 {
				t.Fatalf("member %+v", st)
			}
		})
	}
}

// TestCallerGoneMarksNothing: a remote server that goes away while a
// member works leaves the member's health alone and is not failed over.
func TestCallerGoneMarksNothing(t *testing.T) {
	hs, urls := startWorkers(t, 2)
	started := make(chan struct{}, 2)
	for _, h := range hs {
		h.Handle(func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-r.Context().Done()
		})
	}
	s := buildSet(t, SetOptions{URLs: urls}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := s.RoundTrip(ctx, endpoint(t, "version", "GET"), "", &Request{Method: "GET", Target: "/_matrix/federation/v1/version"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	for _, m := range s.Status()[0].Members {
		if m.State == Down || m.Failovers != 0 || m.InFlight != 0 {
			t.Fatalf("member after a cancelled request: %+v", m)
		}
	}
}

// TestEveryMemberDownStillTried: health bookkeeping never refuses
// traffic: with every member marked down, requests are still sent, and
// the member that answers is up again.
func TestEveryMemberDownStillTried(t *testing.T) {
	_, urls := startWorkers(t, 2)
	s := buildSet(t, SetOptions{URLs: urls, Health: HealthOptions{DownPeriod: time.Hour}}, nil)
	for _, sl := range s.Default().members {
		sl.st.failed(time.Now().UnixNano(), "test", s.Default().health)
	}
	x, body, err := call(t, s, endpoint(t, "version", "GET"), "", "GET", "/_matrix/federation/v1/version", "")
	if err != nil || string(body) != "{}" {
		t.Fatalf("%v %s", err, body)
	}
	if st := s.Status()[0].Members[x.Member].State; st != Up {
		t.Fatalf("the member that answered is %v", st)
	}
}

// TestFailoverBothFail: when the second member fails too, its error is
// the one returned (and decides 502 or 504), mentioning the first.
func TestFailoverBothFail(t *testing.T) {
	a, b := deadURL(t), deadURL(t)
	s := buildSet(t, SetOptions{URLs: []string{a, b}}, nil)
	_, _, err := call(t, s, endpoint(t, "version", "GET"), "", "GET", "/_matrix/federation/v1/version", "")
	var ue *Error
	if !errors.As(err, &ue) || ue.Kind != NotSent || !strings.Contains(err.Error(), "after failing over from") {
		t.Fatalf("%v", err)
	}
	for _, m := range s.Status()[0].Members {
		if m.State != Down {
			t.Fatalf("member %+v", m)
		}
	}
}

// TestFailedExchangeNamesMember: a request no member answered still says
// which pool and member it went to last, for the access log.
func TestFailedExchangeNamesMember(t *testing.T) {
	dead := []string{deadURL(t), deadURL(t)}
	s := buildSet(t, SetOptions{URLs: []string{memberURLs(1)[0]}, Routes: []RouteOptions{
		{Name: "senders", Endpoints: []string{"send"}, URLs: dead},
	}}, nil)
	ep := endpoint(t, "send", "PUT")
	x, _, err := call(t, s, ep, "origin.test", "PUT", "/_matrix/federation/v1/send/t1", `{"pdus":[]}`)
	if kindOf(err) != NotSent {
		t.Fatalf("err %v", err)
	}
	if x.Pool != "senders" || !x.Failover || x.Response != nil {
		t.Fatalf("exchange %+v", x)
	}
	if x.Member != 0 && x.Member != 1 {
		t.Fatalf("member %d", x.Member)
	}
	x.Close() // does nothing, and does not panic
}
