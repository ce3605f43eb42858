package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/fedgate/fedgate/internal/servername"
)

// serveWorkerProxy handles one request of Synapse's outbound federation
// proxy protocol (Synapse 1.89 and later, outbound_federation_restricted_to
// naming fedgate in instance_map): "METHOD matrix-federation://<server
// name>/<path>?<query>" with "Proxy-Authorization: Bearer <secret>" (the
// homeserver's worker_replication_secret). The server name is the
// destination. The credentials are checked before anything else of the
// request is looked at, with the status and errcode Synapse's own proxy
// uses.
func (e *egress) serveWorkerProxy(w http.ResponseWriter, r *http.Request, rt *runtime) {
	er := e.newRequest(w, r, rt, modeWorkerProxy)
	e.run(er,
		egressStage{"proxy_auth", (*egress).stageBearer},
		egressStage{"target", (*egress).stageWorkerTarget},
	)
}

// stageBearer checks Proxy-Authorization as Synapse's proxy does: none is
// 401 M_MISSING_TOKEN; several, another scheme or a wrong secret is 401
// M_UNAUTHORIZED. The secret names the hosted server the homeserver may
// send as.
func (e *egress) stageBearer(er *egressRequest) error {
	hs, err := checkBearer(er.r.Header.Values("Proxy-Authorization"), er.rt)
	er.authAs = hs
	return err
}

// checkBearer validates the Proxy-Authorization values of a worker-proxy
// request against the hosted servers' egress secrets and returns the
// server whose secret it is.
func checkBearer(values []string, rt *runtime) (*hostedServer, error) {
	switch {
	case len(values) == 0:
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeMissingToken, Msg: "Missing Proxy-Authorization header.", Reason: "proxy_auth_missing"}
	case len(values) > 1:
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "Too many Proxy-Authorization headers.", Reason: "proxy_auth_invalid"}
	}
	token, ok := parseBearer(values[0])
	var hs *hostedServer
	if ok {
		hs = rt.egressSender(token)
	}
	if hs == nil {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "Invalid Proxy-Authorization header.", Reason: "proxy_auth_invalid"}
	}
	return hs, nil
}

// parseBearer splits "Bearer <token>" exactly as Synapse does: the value
// split on single spaces must be two parts, the first "Bearer".
func parseBearer(v string) (token string, ok bool) {
	scheme, token, found := strings.Cut(v, " ")
	if !found || scheme != "Bearer" || strings.Contains(token, " ") {
		return "", false
	}
	return token, true
}

// stageWorkerTarget splits the absolute-form target into the destination
// server name and the request-target to send.
func (e *egress) stageWorkerTarget(er *egressRequest) error {
	server, target, err := parseWorkerProxyTarget(er.r.RequestURI)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Msg: "Bad matrix-federation:// target: " + err.Error(), Reason: "bad_target"}
	}
	er.targetServer = server
	return er.splitTarget(target)
}

// Errors of [parseWorkerProxyTarget].
var (
	errNotWorkerTarget = errors.New("not a matrix-federation:// URL")
	errTargetNoPath    = errors.New("no path after the server name")
	errTargetServer    = errors.New("the authority is not a valid server name")
)

// parseWorkerProxyTarget splits "matrix-federation://<server name><path>"
// (scheme in any case) into the server name and the origin-form
// request-target, byte for byte: Synapse signed exactly these bytes. The
// server name must be valid by the spec's grammar (no user info, no
// empty port); the target must start with '/'.
func parseWorkerProxyTarget(uri string) (server, target string, err error) {
	if !hasPrefixFold(uri, workerProxyScheme) {
		return "", "", errNotWorkerTarget
	}
	rest := uri[len(workerProxyScheme):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", errTargetNoPath
	}
	server, target = rest[:i], rest[i:]
	if !servername.Valid(server) {
		return "", "", errTargetServer
	}
	return server, target, nil
}
