package policyroom

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// stateFileVersion is the format of the state file.
const stateFileVersion = 1

// maxStateFile bounds the state file read at start.
const maxStateFile = 256 << 20

// savedState is the state file: the last good rules of one configured
// room, the room they were read from (after alias resolution and room
// upgrades) and when.
type savedState struct {
	Version int       `json:"version"`
	Room    string    `json:"room"`
	RoomID  string    `json:"room_id"`
	Synced  time.Time `json:"synced"`
	Rules   []Rule    `json:"rules"`
}

// restore loads the state file, if it belongs to the configured room, for
// Publish. Without one, and with max_age, Publish hands over an empty set
// that is already stale: federation fails closed until the room has been
// read. Called by New.
func (s *Source) restore() {
	var saved savedState
	ok := s.readState(&saved)
	if ok {
		if len(saved.Rules) > s.o.MaxRules {
			s.log.Error("saved policy room rules exceed max_rules; the rest are ignored", "saved", len(saved.Rules), "max_rules", s.o.MaxRules)
			saved.Rules = saved.Rules[:s.o.MaxRules]
		}
		if validRoomID(saved.RoomID) {
			s.roomID = saved.RoomID
		}
		for i := range saved.Rules {
			r := saved.Rules[i]
			s.state.rules[keyOf(r.Type, r.StateKey)] = &r
		}
		s.persisted = saved.Synced
		s.mu.Lock()
		s.st.State = StateRestored
		s.st.RoomID = s.roomID
		s.st.LastSync = saved.Synced
		s.st.Rules = len(s.state.rules)
		s.mu.Unlock()
		s.log.Info("policy room rules restored from data_dir until the homeserver answers",
			"room_id", s.roomID, "rules", len(saved.Rules), "synced", saved.Synced)
		s.restored, s.restoredAt = saved.Rules, saved.Synced
		if s.restored == nil {
			s.restored = []Rule{}
		}
	}
}

// readState reads and checks the state file.
func (s *Source) readState(out *savedState) bool {
	if s.o.StateFile == "" {
		return false
	}
	data, err := fsutil.ReadFileLimited(s.o.StateFile, maxStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err == nil {
		err = json.Unmarshal(data, out)
	}
	switch {
	case err != nil:
		s.log.Warn("policy room state file unreadable; starting without saved rules", "file", s.o.StateFile, "error", err)
		return false
	case out.Version != stateFileVersion:
		s.log.Warn("policy room state file has an unknown format; starting without saved rules", "file", s.o.StateFile, "version", out.Version)
		return false
	case out.Room != s.o.Room:
		// The file belongs to another configured room (the name is a hash
		// of the configuration; this is a collision or a hand edit).
		return false
	}
	return true
}

// persist writes the rules in force to the state file.
func (s *Source) persist(synced time.Time) {
	if s.o.StateFile == "" {
		return
	}
	saved := savedState{Version: stateFileVersion, Room: s.o.Room, RoomID: s.roomID, Synced: synced.UTC(), Rules: s.state.list()}
	data, err := json.Marshal(saved)
	if err == nil {
		err = fsutil.WriteFileAtomic(s.o.StateFile, data, 0o600)
	}
	if err != nil {
		if !errors.Is(err, os.ErrPermission) || s.persisted.IsZero() {
			s.log.Warn("policy room rules not saved to data_dir", "file", s.o.StateFile, "error", err)
		}
		return
	}
	s.persisted = synced
}
