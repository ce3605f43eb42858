//go:build race

package auth

// raceEnabled is true under -race, where sync.Pool deliberately drops
// items and allocation counts mean nothing.
const raceEnabled = true
