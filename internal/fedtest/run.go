package fedtest

import (
	"context"
	"testing"
)

// RunUntilCleanup runs loop on its own goroutine with a context that
// lives until the test ends, the way tests keep a component's Run loop
// (a cluster client's health loop, a subscriber) going. When the test
// ends it cancels the context, waits for loop to return, and then calls
// closers in order, so nothing outlives the test and nothing is closed
// under a loop still running. Closer errors are only logged: the test is
// over by then.
func RunUntilCleanup(t testing.TB, loop func(context.Context), closers ...func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, c := range closers {
			if err := c(); err != nil {
				t.Logf("closing after the test: %v", err)
			}
		}
	})
}
