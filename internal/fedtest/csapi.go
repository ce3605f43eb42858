package fedtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// CSServer is a client-server API on 127.0.0.1 that serves what a policy
// room subscriber needs, the way a homeserver does: /sync (initial and
// incremental, long-poll, inline filters on rooms and event types,
// timeline limits with "limited" gaps, left rooms), /join (public rooms or
// invited users), /directory/room aliases, state events, redactions and
// room upgrades (m.room.tombstone). Every request must carry a known
// access token. Safe for concurrent use.
type CSServer struct {
	URL string
	srv *httptest.Server

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every new event
	pos     int           // stream position of the last event
	users   map[string]string
	rooms   map[string]*csRoom
	aliases map[string]string
	down    bool
	syncs   int
	seq     int
}

type csRoom struct {
	id      string
	public  bool
	members map[string]int // user -> stream position of the join; absent: not joined
	left    map[string]int // user -> stream position of the leave
	invited map[string]bool
	events  []*csEvent
	state   map[[2]string]*csEvent
}

type csEvent struct {
	pos      int
	ID       string          `json:"event_id"`
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key,omitempty"`
	Sender   string          `json:"sender"`
	Content  json.RawMessage `json:"content"`
	Redacts  string          `json:"redacts,omitempty"`
	TS       int64           `json:"origin_server_ts"`
}

// StartCSServer starts a client-server API with no rooms or users.
func StartCSServer(t testing.TB) *CSServer {
	t.Helper()
	s := &CSServer{changed: make(chan struct{}), users: map[string]string{}, rooms: map[string]*csRoom{}, aliases: map[string]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// AddUser registers an access token for user ("@bot:hs.test").
func (s *CSServer) AddUser(user, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[token] = user
}

// CreateRoom creates a room; public rooms may be joined by anyone.
// members join at once.
func (s *CSServer) CreateRoom(id string, public bool, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &csRoom{id: id, public: public, members: map[string]int{}, left: map[string]int{}, invited: map[string]bool{}, state: map[[2]string]*csEvent{}}
	for _, m := range members {
		r.members[m] = 0
	}
	s.rooms[id] = r
}

// SetAlias points alias at room.
func (s *CSServer) SetAlias(alias, room string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aliases[alias] = room
}

// Invite lets user join a non-public room.
func (s *CSServer) Invite(room, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[room].invited[user] = true
}

// Kick removes user from room.
func (s *CSServer) Kick(room, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	delete(r.members, user)
	s.appendLocked(r, "m.room.member", ptr(user), "@mod:hs.test", json.RawMessage(`{"membership":"leave"}`))
	r.left[user] = s.pos
}

// SendState sets a state event and returns its event ID. content is JSON.
func (s *CSServer) SendState(room, typ, stateKey, content string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(s.rooms[room], typ, &stateKey, "@mod:hs.test", json.RawMessage(content)).ID
}

// SendMessage adds a non-state event (noise the filter must drop).
func (s *CSServer) SendMessage(room, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	s.appendLocked(s.rooms[room], "m.room.message", nil, "@mod:hs.test", c)
}

// Redact redacts the event eventID: its content becomes {} (for the
// rule types, redaction keeps no content key) and an m.room.redaction
// event enters the timeline.
func (s *CSServer) Redact(room, eventID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	for _, ev := range r.events {
		if ev.ID == eventID {
			ev.Content = json.RawMessage(`{}`)
		}
	}
	ev := s.appendLocked(r, "m.room.redaction", nil, "@mod:hs.test", json.RawMessage(`{"redacts":`+strconv.Quote(eventID)+`}`))
	ev.Redacts = eventID
}

// Upgrade tombstones room in favour of replacement (which must exist).
func (s *CSServer) Upgrade(room, replacement string) {
	s.SendState(room, "m.room.tombstone", "", `{"body":"This room has been replaced","replacement_room":`+strconv.Quote(replacement)+`}`)
}

// SetDown makes every request fail with 502, as a proxy in front of a
// stopped homeserver answers.
func (s *CSServer) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Syncs counts /sync requests answered.
func (s *CSServer) Syncs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

// Joined reports whether user is in room.
func (s *CSServer) Joined(room, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rooms[room].members[user]
	return ok
}

func (s *CSServer) appendLocked(r *csRoom, typ string, stateKey *string, sender string, content json.RawMessage) *csEvent {
	s.pos++
	s.seq++
	ev := &csEvent{pos: s.pos, ID: fmt.Sprintf("$ev%d", s.seq), Type: typ, StateKey: stateKey, Sender: sender, Content: content, TS: time.Now().UnixMilli()}
	r.events = append(r.events, ev)
	if stateKey != nil {
		r.state[[2]string{typ, *stateKey}] = ev
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return ev
}

func ptr(s string) *string { return &s }

func csError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errcode": code, "error": msg})
}

func (s *CSServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	user, known := s.users[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	s.mu.Unlock()
	switch {
	case down:
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	case r.Header.Get("Authorization") == "":
		csError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
		return
	case !known:
		csError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unknown access token")
		return
	}
	path := r.URL.EscapedPath()
	switch {
	case r.Method == http.MethodGet && path == "/_matrix/client/v3/sync":
		s.serveSync(w, r, user)
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/_matrix/client/v3/join/"):
		target, _ := url.PathUnescape(strings.TrimPrefix(path, "/_matrix/client/v3/join/"))
		s.serveJoin(w, target, user)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/_matrix/client/v3/directory/room/"):
		alias, _ := url.PathUnescape(strings.TrimPrefix(path, "/_matrix/client/v3/directory/room/"))
		s.mu.Lock()
		id, ok := s.aliases[alias]
		s.mu.Unlock()
		if !ok {
			csError(w, http.StatusNotFound, "M_NOT_FOUND", "Room alias not found")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"room_id": id, "servers": []string{"hs.test"}})
	default:
		csError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	}
}

func (s *CSServer) serveJoin(w http.ResponseWriter, target, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.aliases[target]; ok {
		target = id
	}
	room, ok := s.rooms[target]
	if !ok {
		csError(w, http.StatusNotFound, "M_NOT_FOUND", "No known servers")
		return
	}
	if _, in := room.members[user]; !in {
		if !room.public && !room.invited[user] {
			csError(w, http.StatusForbidden, "M_FORBIDDEN", "You are not invited to this room.")
			return
		}
		s.appendLocked(room, "m.room.member", ptr(user), user, json.RawMessage(`{"membership":"join"}`))
		room.members[user] = s.pos
		delete(room.left, user)
	}
	json.NewEncoder(w).Encode(map[string]string{"room_id": room.id})
}

// syncFilter is the part of a filter the server honours.
type syncFilter struct {
	Room struct {
		Rooms    []string                 `json:"rooms"`
		State    struct{ Types []string } `json:"state"`
		Timeline struct {
			Types []string `json:"types"`
			Limit int      `json:"limit"`
		} `json:"timeline"`
	} `json:"room"`
}

func (s *CSServer) serveSync(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	var f syncFilter
	if raw := q.Get("filter"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			csError(w, http.StatusBadRequest, "M_INVALID_PARAM", "bad filter")
			return
		}
	}
	if f.Room.Timeline.Limit <= 0 {
		f.Room.Timeline.Limit = 10
	}
	since := -1
	if v := q.Get("since"); v != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "s"))
		if err != nil {
			csError(w, http.StatusBadRequest, "M_INVALID_PARAM", "bad since")
			return
		}
		since = n
	}
	timeout, _ := strconv.Atoi(q.Get("timeout"))
	deadline := time.Now().Add(time.Duration(timeout) * time.Millisecond)
	for {
		s.mu.Lock()
		resp, found := s.syncLocked(user, since, &f)
		wait := s.changed
		if found || since < 0 || !time.Now().Before(deadline) {
			s.syncs++
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(resp)
			return
		}
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wait:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

func match(types []string, t string) bool {
	if types == nil {
		return true
	}
	for _, x := range types {
		if x == t || x == "*" {
			return true
		}
	}
	return false
}

// syncLocked builds a sync answer; found reports whether it holds anything
// for the user (so a long-poll may return).
func (s *CSServer) syncLocked(user string, since int, f *syncFilter) (map[string]any, bool) {
	join, leave := map[string]any{}, map[string]any{}
	found := false
	for id, room := range s.rooms {
		if f.Room.Rooms != nil && !match(f.Room.Rooms, id) {
			continue
		}
		if at, ok := room.left[user]; ok {
			if since >= 0 && at > since {
				leave[id] = map[string]any{}
				found = true
			}
			continue
		}
		joinedAt, ok := room.members[user]
		if !ok {
			continue
		}
		if since < 0 || joinedAt > since {
			// Initial sync (or newly joined): the whole filtered state, an
			// empty timeline.
			var state []*csEvent
			for _, ev := range room.state {
				if match(f.Room.State.Types, ev.Type) {
					state = append(state, ev)
				}
			}
			join[id] = map[string]any{"state": map[string]any{"events": orEmpty(state)}, "timeline": map[string]any{"events": []any{}, "limited": false}}
			found = true
			continue
		}
		var tl []*csEvent
		for _, ev := range room.events {
			if ev.pos > since && match(f.Room.Timeline.Types, ev.Type) {
				tl = append(tl, ev)
			}
		}
		if len(tl) == 0 {
			continue
		}
		limited := len(tl) > f.Room.Timeline.Limit
		var state []*csEvent
		if limited {
			gap := tl[:len(tl)-f.Room.Timeline.Limit]
			tl = tl[len(tl)-f.Room.Timeline.Limit:]
			seen := map[[2]string]bool{}
			for i := len(gap) - 1; i >= 0; i-- {
				ev := gap[i]
				if ev.StateKey == nil || !match(f.Room.State.Types, ev.Type) {
					continue
				}
				k := [2]string{ev.Type, *ev.StateKey}
				if !seen[k] {
					seen[k] = true
					state = append(state, room.state[k])
				}
			}
		}
		join[id] = map[string]any{"state": map[string]any{"events": orEmpty(state)}, "timeline": map[string]any{"events": orEmpty(tl), "limited": limited}}
		found = true
	}
	return map[string]any{"next_batch": "s" + strconv.Itoa(s.pos), "rooms": map[string]any{"join": join, "leave": leave, "invite": map[string]any{}}}, found
}

func orEmpty(evs []*csEvent) []*csEvent {
	if evs == nil {
		return []*csEvent{}
	}
	return evs
}
