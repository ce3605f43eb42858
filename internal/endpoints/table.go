package endpoints

// Auth says how a request to an endpoint is authenticated.
type Auth uint8

const (
	// AuthNone: no authentication (well-known, keys, version, legacy media,
	// identity-server callbacks).
	AuthNone Auth = iota
	// AuthXMatrix: the request must carry a valid X-Matrix signature.
	AuthXMatrix
	// AuthOpenID: an OpenID access token in the query string, checked by the
	// homeserver (openid/userinfo).
	AuthOpenID
)

func (a Auth) String() string {
	switch a {
	case AuthXMatrix:
		return "x-matrix"
	case AuthOpenID:
		return "openid"
	default:
		return "none"
	}
}

// Owner says who must own a user named by a request.
type Owner uint8

const (
	// OwnerAny: no locality rule.
	OwnerAny Owner = iota
	// OwnerLocal: the user must belong to our server (the request asks about
	// our users), e.g. query/profile and user/devices.
	OwnerLocal
	// OwnerOrigin: the user must belong to the requesting server, e.g. the
	// userId of make_join.
	OwnerOrigin
)

// Body classes decide the default request-body limit.
const (
	BodyDefault = iota // the [inbound] max_body limit
	BodyLarge          // the [inbound] max_body_send limit (transactions)
)

// Endpoint is one row of the table. Rows are immutable.
type Endpoint struct {
	// Name identifies the operation, e.g. "make_join". Versions of the same
	// operation (v1 and v2 invite, the removed key-server forms) share a name.
	Name string
	// Class groups operations for policy, e.g. "join" covers make_join and
	// send_join. Policy rules may name a class or an operation.
	Class string
	// Method is the HTTP method.
	Method string
	// Path is the template, with parameters written {like_this}.
	Path string
	// Auth is how requests are authenticated.
	Auth Auth
	// Local marks endpoints that fedgate answers itself instead of
	// forwarding them to the homeserver.
	Local bool
	// OperationID is the spec's OpenAPI operationId, or "" for endpoints that
	// are no longer (or never were) in the server-server spec.
	OperationID string
	// Removed marks endpoints removed from the current spec that older
	// servers still call.
	Removed bool
	// RoomParam names the path parameter that holds a room ID, if any.
	RoomParam string
	// UserParam names the path parameter that holds a user ID, if any.
	UserParam string
	// UserQuery names the query parameter that holds a user ID, if any.
	UserQuery string
	// UserOwner is the locality rule for the user in UserParam/UserQuery,
	// or for the user IDs in the body of the user/keys endpoints.
	UserOwner Owner
	// UserBody marks endpoints whose JSON body names users (user/keys/*):
	// the top-level maps one_time_keys / device_keys are keyed by user ID.
	UserBody bool
	// Body selects the default body-size limit.
	Body int
}

// Table is every endpoint fedgate routes, in no particular order. Templates
// are the spec's (basePath + path); parameter names are the spec's too.
var table = [...]Endpoint{
	// Served by fedgate itself.
	{Name: "well_known", Class: "well_known", Method: "GET", Path: "/.well-known/matrix/server", Auth: AuthNone, Local: true, OperationID: "getWellKnown"},
	{Name: "server_keys", Class: "keys", Method: "GET", Path: "/_matrix/key/v2/server", Auth: AuthNone, Local: true, OperationID: "getServerKey"},
	{Name: "server_keys", Class: "keys", Method: "GET", Path: "/_matrix/key/v2/server/", Auth: AuthNone, Local: true, Removed: true},
	{Name: "server_keys", Class: "keys", Method: "GET", Path: "/_matrix/key/v2/server/{keyId}", Auth: AuthNone, Local: true, Removed: true},
	{Name: "key_query", Class: "notary", Method: "GET", Path: "/_matrix/key/v2/query/{serverName}", Auth: AuthNone, Local: true, OperationID: "perspectivesKeyQuery"},
	{Name: "key_query", Class: "notary", Method: "GET", Path: "/_matrix/key/v2/query/{serverName}/{keyId}", Auth: AuthNone, Local: true, Removed: true},
	{Name: "key_query", Class: "notary", Method: "POST", Path: "/_matrix/key/v2/query", Auth: AuthNone, Local: true, OperationID: "bulkPerspectivesKeyQuery"},

	// Unauthenticated, forwarded.
	{Name: "version", Class: "version", Method: "GET", Path: "/_matrix/federation/v1/version", Auth: AuthNone, OperationID: "getVersion"},
	{Name: "openid_userinfo", Class: "openid", Method: "GET", Path: "/_matrix/federation/v1/openid/userinfo", Auth: AuthOpenID, OperationID: "exchangeOpenIdToken"},
	{Name: "3pid_onbind", Class: "third_party_invite", Method: "PUT", Path: "/_matrix/federation/v1/3pid/onbind", Auth: AuthNone, OperationID: "onBindThirdPartyIdentifier"},

	// Transactions.
	{Name: "send", Class: "send", Method: "PUT", Path: "/_matrix/federation/v1/send/{txnId}", Auth: AuthXMatrix, OperationID: "sendTransaction", Body: BodyLarge},

	// Room history and state.
	{Name: "event_auth", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "getEventAuth", RoomParam: "roomId"},
	{Name: "backfill", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/backfill/{roomId}", Auth: AuthXMatrix, OperationID: "backfillRoom", RoomParam: "roomId"},
	{Name: "get_missing_events", Class: "events", Method: "POST", Path: "/_matrix/federation/v1/get_missing_events/{roomId}", Auth: AuthXMatrix, OperationID: "getMissingPreviousEvents", RoomParam: "roomId"},
	{Name: "state", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/state/{roomId}", Auth: AuthXMatrix, OperationID: "getRoomState", RoomParam: "roomId"},
	{Name: "state_ids", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/state_ids/{roomId}", Auth: AuthXMatrix, OperationID: "getRoomStateIds", RoomParam: "roomId"},
	{Name: "event", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/event/{eventId}", Auth: AuthXMatrix, OperationID: "getEvent"},
	// The spec marks timestamp_to_event with "accessToken" security by
	// mistake; servers sign it with X-Matrix like every other endpoint here.
	{Name: "timestamp_to_event", Class: "events", Method: "GET", Path: "/_matrix/federation/v1/timestamp_to_event/{roomId}", Auth: AuthXMatrix, OperationID: "getEventByTimestamp", RoomParam: "roomId"},

	// Joining, knocking, inviting, leaving.
	{Name: "make_join", Class: "join", Method: "GET", Path: "/_matrix/federation/v1/make_join/{roomId}/{userId}", Auth: AuthXMatrix, OperationID: "makeJoin", RoomParam: "roomId", UserParam: "userId", UserOwner: OwnerOrigin},
	{Name: "send_join", Class: "join", Method: "PUT", Path: "/_matrix/federation/v2/send_join/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "sendJoinV2", RoomParam: "roomId"},
	{Name: "send_join", Class: "join", Method: "PUT", Path: "/_matrix/federation/v1/send_join/{roomId}/{eventId}", Auth: AuthXMatrix, Removed: true, RoomParam: "roomId"},
	{Name: "make_knock", Class: "knock", Method: "GET", Path: "/_matrix/federation/v1/make_knock/{roomId}/{userId}", Auth: AuthXMatrix, OperationID: "makeKnock", RoomParam: "roomId", UserParam: "userId", UserOwner: OwnerOrigin},
	{Name: "send_knock", Class: "knock", Method: "PUT", Path: "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "sendKnock", RoomParam: "roomId"},
	{Name: "invite", Class: "invite", Method: "PUT", Path: "/_matrix/federation/v1/invite/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "sendInviteV1", RoomParam: "roomId"},
	{Name: "invite", Class: "invite", Method: "PUT", Path: "/_matrix/federation/v2/invite/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "sendInviteV2", RoomParam: "roomId"},
	{Name: "make_leave", Class: "leave", Method: "GET", Path: "/_matrix/federation/v1/make_leave/{roomId}/{userId}", Auth: AuthXMatrix, OperationID: "makeLeave", RoomParam: "roomId", UserParam: "userId", UserOwner: OwnerOrigin},
	{Name: "send_leave", Class: "leave", Method: "PUT", Path: "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", Auth: AuthXMatrix, OperationID: "sendLeaveV2", RoomParam: "roomId"},
	{Name: "send_leave", Class: "leave", Method: "PUT", Path: "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", Auth: AuthXMatrix, Removed: true, RoomParam: "roomId"},
	{Name: "exchange_third_party_invite", Class: "third_party_invite", Method: "PUT", Path: "/_matrix/federation/v1/exchange_third_party_invite/{roomId}", Auth: AuthXMatrix, OperationID: "exchangeThirdPartyInvite", RoomParam: "roomId"},

	// Directory, spaces, queries.
	{Name: "public_rooms", Class: "public_rooms", Method: "GET", Path: "/_matrix/federation/v1/publicRooms", Auth: AuthXMatrix, OperationID: "getPublicRooms"},
	{Name: "public_rooms", Class: "public_rooms", Method: "POST", Path: "/_matrix/federation/v1/publicRooms", Auth: AuthXMatrix, OperationID: "queryPublicRooms"},
	{Name: "hierarchy", Class: "hierarchy", Method: "GET", Path: "/_matrix/federation/v1/hierarchy/{roomId}", Auth: AuthXMatrix, OperationID: "getSpaceHierarchy", RoomParam: "roomId"},
	{Name: "query", Class: "query", Method: "GET", Path: "/_matrix/federation/v1/query/{queryType}", Auth: AuthXMatrix, OperationID: "queryInfo"},
	{Name: "query_directory", Class: "query_directory", Method: "GET", Path: "/_matrix/federation/v1/query/directory", Auth: AuthXMatrix, OperationID: "queryRoomDirectory"},
	{Name: "query_profile", Class: "query_profile", Method: "GET", Path: "/_matrix/federation/v1/query/profile", Auth: AuthXMatrix, OperationID: "queryProfile", UserQuery: "user_id", UserOwner: OwnerLocal},

	// Devices and end-to-end keys.
	{Name: "user_devices", Class: "user_devices", Method: "GET", Path: "/_matrix/federation/v1/user/devices/{userId}", Auth: AuthXMatrix, OperationID: "getUserDevices", UserParam: "userId", UserOwner: OwnerLocal},
	{Name: "user_keys_claim", Class: "user_keys", Method: "POST", Path: "/_matrix/federation/v1/user/keys/claim", Auth: AuthXMatrix, OperationID: "claimUserEncryptionKeys", UserOwner: OwnerLocal, UserBody: true},
	{Name: "user_keys_query", Class: "user_keys", Method: "POST", Path: "/_matrix/federation/v1/user/keys/query", Auth: AuthXMatrix, OperationID: "queryUserEncryptionKeys", UserOwner: OwnerLocal, UserBody: true},

	// Media: authenticated (v1.11) and the legacy unauthenticated fallback
	// that servers still use after a 404 M_UNRECOGNIZED.
	{Name: "media_download", Class: "media", Method: "GET", Path: "/_matrix/federation/v1/media/download/{mediaId}", Auth: AuthXMatrix, OperationID: "getContent"},
	{Name: "media_thumbnail", Class: "media", Method: "GET", Path: "/_matrix/federation/v1/media/thumbnail/{mediaId}", Auth: AuthXMatrix, OperationID: "getContentThumbnail"},
	{Name: "legacy_media_download", Class: "media", Method: "GET", Path: "/_matrix/media/v3/download/{serverName}/{mediaId}", Auth: AuthNone, Removed: true},
	{Name: "legacy_media_download", Class: "media", Method: "GET", Path: "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}", Auth: AuthNone, Removed: true},
	{Name: "legacy_media_thumbnail", Class: "media", Method: "GET", Path: "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}", Auth: AuthNone, Removed: true},
	{Name: "legacy_media_download", Class: "media", Method: "GET", Path: "/_matrix/media/r0/download/{serverName}/{mediaId}", Auth: AuthNone, Removed: true},
	{Name: "legacy_media_download", Class: "media", Method: "GET", Path: "/_matrix/media/r0/download/{serverName}/{mediaId}/{fileName}", Auth: AuthNone, Removed: true},
	{Name: "legacy_media_thumbnail", Class: "media", Method: "GET", Path: "/_matrix/media/r0/thumbnail/{serverName}/{mediaId}", Auth: AuthNone, Removed: true},

	// Policy servers (v1.18).
	{Name: "policy_sign", Class: "policy_sign", Method: "POST", Path: "/_matrix/policy/v1/sign", Auth: AuthXMatrix, OperationID: "askPolicyServerToSign"},
}

// All returns a copy of every row of the table.
func All() []Endpoint {
	out := make([]Endpoint, len(table))
	copy(out, table[:])
	return out
}

// Known reports whether name is an endpoint class or an operation name, the
// two kinds of names policy rules may use.
func Known(name string) bool {
	for i := range table {
		if table[i].Class == name || table[i].Name == name {
			return true
		}
	}
	return false
}

// Names returns the sorted, de-duplicated classes and operation names.
func Names() (classes, operations []string) {
	seenC, seenO := map[string]bool{}, map[string]bool{}
	for i := range table {
		if !seenC[table[i].Class] {
			seenC[table[i].Class] = true
			classes = append(classes, table[i].Class)
		}
		if !seenO[table[i].Name] {
			seenO[table[i].Name] = true
			operations = append(operations, table[i].Name)
		}
	}
	sortStrings(classes)
	sortStrings(operations)
	return classes, operations
}
