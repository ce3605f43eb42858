package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestPoolsSendAnswerBrokenOffNeverOK: the /send rule holds per member of
// a pool (issue 16): a worker that breaks off inside its 200 answer to a
// transaction makes the remote server see an error, never a 200 it would
// take for a delivered transaction; the answer's head had arrived, so the
// transaction is not sent to a second worker either. Transactions that
// land on the healthy worker are answered 200 as usual.
func TestPoolsSendAnswerBrokenOffNeverOK(t *testing.T) {
	main, broken, healthy := startWorker(t), startWorker(t), startWorker(t)
	const partial = `{"pdus":{`
	broken.handle(func(rw http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(rw).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n%s", partial)
		buf.Flush()
	})
	env := startPools(t, 32, fmt.Sprintf("url = %q\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(broken, healthy)))
	onBroken := 0
	for _, o := range env.origins {
		nb, nh := len(broken.requests()), len(healthy.requests())
		target := fmt.Sprintf("/_matrix/federation/v1/send/t%d", txnCounter.Add(1))
		status, body, err := env.send(o, "PUT", target, `{"origin":"`+o.name+`","origin_server_ts":1700000000000,"pdus":[],"edus":[]}`)
		db, dh := len(broken.requests())-nb, len(healthy.requests())-nh
		if db+dh != 1 {
			t.Fatalf("%s: the transaction reached the broken worker %d times and the healthy one %d times, want one in all", o.name, db, dh)
		}
		if db == 1 {
			onBroken++
			if err != nil || status != http.StatusBadGateway || strings.Contains(body, partial) {
				t.Fatalf("%s: broken-off answer passed on as %d %q (%v), want 502 without the partial body", o.name, status, body, err)
			}
			continue
		}
		if err != nil || status != http.StatusOK || body != `{"pdus":{}}` {
			t.Fatalf("%s on the healthy worker: %d %q %v", o.name, status, body, err)
		}
	}
	t.Logf("%d of %d transactions reached the broken worker", onBroken, len(env.origins))
	if onBroken == 0 {
		t.Fatal("no transaction reached the broken worker: the test checked nothing")
	}
	if n := len(main.requests()); n != 0 {
		t.Errorf("the default pool got %d transactions", n)
	}
}
