package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestKeysLockAndPublish(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a, b := newClient(t, r, "a").Keys(), newClient(t, r, "b").Keys()
	ctx := context.Background()
	if sk, err := a.Lookup(ctx, "remote.example"); err != nil || sk.Document != nil || sk.Fetching {
		t.Fatalf("empty store: %+v %v", sk, err)
	}
	done, ok, err := a.LockFetch(ctx, "remote.example")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := b.LockFetch(ctx, "remote.example"); err != nil || ok {
		t.Fatalf("second lock taken while held: %v %v", ok, err)
	}
	// The holder keeps the lock alive past its TTL while it fetches.
	time.Sleep(3500 * time.Millisecond)
	if sk, err := b.Lookup(ctx, "remote.example"); err != nil || !sk.Fetching {
		t.Fatalf("lock lapsed while its holder lives: %+v %v", sk, err)
	}
	checked := time.UnixMilli(time.Now().UnixMilli())
	doc := []byte(`{"server_name":"remote.example"}`)
	if err := done(ctx, auth.SharedKeys{Document: doc, Checked: checked}); err != nil {
		t.Fatal(err)
	}
	sk, err := b.Lookup(ctx, "remote.example")
	if err != nil || sk.Fetching || !bytes.Equal(sk.Document, doc) || !sk.Checked.Equal(checked) || sk.Failures != 0 {
		t.Fatalf("after publish: %+v %v", sk, err)
	}
	// A failure keeps the document; an older document never replaces a newer one.
	retry := checked.Add(time.Minute)
	if err := b.Publish(ctx, "remote.example", auth.SharedKeys{Failures: 2, RetryAt: retry, Reason: "unreachable"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "remote.example", auth.SharedKeys{Document: []byte(`{"old":1}`), Checked: checked.Add(-time.Hour), Failures: 2, RetryAt: retry, Reason: "unreachable"}); err != nil {
		t.Fatal(err)
	}
	sk, err = a.Lookup(ctx, "remote.example")
	if err != nil || !bytes.Equal(sk.Document, doc) || sk.Failures != 2 || !sk.RetryAt.Equal(retry) || sk.Reason != "unreachable" {
		t.Fatalf("after failure: %+v %v", sk, err)
	}
}

func TestKeysVanishedHolder(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a := newClient(t, r, "a").Keys()
	ctx := context.Background()
	// A holder that died leaves a lock without a keeper: it lapses.
	r.Do("SET test:keys:gone.example:lock dead:0 PX 300")
	if _, ok, _ := a.LockFetch(ctx, "gone.example"); ok {
		t.Fatal("took a lock still held")
	}
	waitFor(t, "the orphaned lock to lapse", 5*time.Second, func() bool {
		_, ok, err := a.LockFetch(ctx, "gone.example")
		return ok && err == nil
	})
}

func TestKeysMalformedRecordIgnored(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a := newClient(t, r, "a").Keys()
	r.Do("HSET test:keys:bad.example doc garbage fail x")
	sk, err := a.Lookup(context.Background(), "bad.example")
	if err != nil || sk.Document != nil || sk.Failures != 0 {
		t.Fatalf("malformed record: %+v %v", sk, err)
	}
}

func TestDecodeKeyRecord(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name      string
		doc, fail []byte
		ok        bool
	}{
		{"empty", nil, nil, true},
		{"doc", cluster.EncodeKeyDocument([]byte("{}"), now), nil, true},
		{"fail", nil, cluster.EncodeKeyFailure(3, now, "why"), true},
		{"no newline", []byte("123"), nil, false},
		{"no document", []byte("123\n"), nil, false},
		{"negative time", []byte("-1\n{}"), nil, false},
		{"huge", append([]byte("1\n"), make([]byte, auth.MaxKeyDocumentSize+64)...), nil, false},
		{"two lines", nil, []byte("1\n2"), false},
		{"bad count", nil, []byte("x\n1\nr"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cluster.DecodeKeyRecord(tc.doc, tc.fail)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
	sk, _ := cluster.DecodeKeyRecord(cluster.EncodeKeyDocument([]byte("{}"), now), cluster.EncodeKeyFailure(3, now, "why"))
	if string(sk.Document) != "{}" || !sk.Checked.Equal(now) || sk.Failures != 3 || !sk.RetryAt.Equal(now) || sk.Reason != "why" {
		t.Fatalf("round trip: %+v", sk)
	}
}

// FuzzDecodeKeyRecord feeds arbitrary Redis replies to the keyring record
// decoder: it must never panic, and what it accepts must be bounded.
func FuzzDecodeKeyRecord(f *testing.F) {
	now := time.UnixMilli(1_700_000_000_000)
	f.Add(cluster.EncodeKeyDocument([]byte(`{"server_name":"a"}`), now), cluster.EncodeKeyFailure(1, now, "unreachable"))
	f.Add([]byte("1\n"), []byte("\n\n"))
	f.Add([]byte(""), []byte("99999999999999999999\n1\n"))
	f.Fuzz(func(t *testing.T, doc, fail []byte) {
		sk, err := cluster.DecodeKeyRecord(doc, fail)
		if err != nil {
			return
		}
		if len(sk.Document) > auth.MaxKeyDocumentSize+32 || len(sk.Reason) > 600 || sk.Failures < 0 {
			t.Fatalf("accepted out of bounds: %d %d %d", len(sk.Document), len(sk.Reason), sk.Failures)
		}
	})
}

// TestDecodeBackoff: a line another writer put in Redis is applied only
// when every field is in range and the destination is a server name.
func TestDecodeBackoff(t *testing.T) {
	for _, tc := range []struct {
		name, line, dest string
		ok               bool
	}{
		{"failing", "node-a 1 3 1700000000000 1699999999000 Remote.Example:8448", "remote.example:8448", true},
		{"cleared", "node-a 0 0 0 1699999999000 remote.example", "remote.example", true},
		{"ip literal", "n 1 1 5 3 [::1]:8448", "[::1]:8448", true},
		{"five fields", "n 1 1 5 3", "", false},
		{"kind out of range", "n 9 1 5 3 remote.example", "", false},
		{"negative failures", "n 1 -1 5 3 remote.example", "", false},
		{"bad time", "n 1 1 x 3 remote.example", "", false},
		{"not a server name", "n 1 1 5 3 remote..example", "", false},
		{"port out of range", "n 1 1 5 3 remote.example:99999", "", false},
		// Invalid UTF-8 grows threefold when lower-cased as text: found by
		// FuzzDecodeBackoff, refused before it can pass the length bound.
		{"not ascii", "n 1 1 5 3 r\xa3\xa3mote.example", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dest, _, err := cluster.DecodeBackoff([]byte(tc.line))
			if (err == nil) != tc.ok || dest != tc.dest {
				t.Fatalf("DecodeBackoff(%q) = %q, %v; want %q, ok %v", tc.line, dest, err, tc.dest, tc.ok)
			}
		})
	}
}

// FuzzDecodeBackoff feeds arbitrary lines to the backoff decoder.
func FuzzDecodeBackoff(f *testing.F) {
	f.Add([]byte(cluster.EncodeBackoff("node", "remote.example:8448", cluster.BackoffEntry{Kind: 1, Failures: 2, Until: time.UnixMilli(5), SetAt: time.UnixMilli(3)})))
	f.Add([]byte("n 0 0 0 0 d"))
	f.Add([]byte("n 9 -1 x y z"))
	f.Fuzz(func(t *testing.T, line []byte) {
		node, dest, e, err := cluster.DecodeBackoff(line)
		if err != nil {
			return
		}
		if e.Kind > cluster.BackoffRateLimited || e.Failures < 0 || len(dest) > 300 || node == "" {
			t.Fatalf("accepted out of bounds: %q %q %+v", node, dest, e)
		}
		// What decodes encodes back to an equivalent line.
		n2, d2, e2, err := cluster.DecodeBackoff([]byte(cluster.EncodeBackoff(node, dest, e)))
		if err != nil || n2 != node || d2 != dest || e2 != e {
			t.Fatalf("round trip: %v %q %q %+v", err, n2, d2, e2)
		}
	})
}
