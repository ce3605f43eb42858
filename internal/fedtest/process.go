package fedtest

import (
	"os/exec"
	"testing"
)

// StartProcess starts cmd, a server a test runs beside it (Pebble, a
// redis-server of its own), with its standard output and error collected
// in the returned buffer. exited is closed when the process has exited.
// When the test ends the process is killed (SIGKILL) and waited for, and
// its output is logged if the test failed; name says whose output it is.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) (out *SyncBuffer, exited <-chan struct{}) {
	t.Helper()
	out = &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out, done
}
