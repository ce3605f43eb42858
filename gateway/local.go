package gateway

import (
	"net/http"
)

// stageLocal answers the endpoints fedgate serves itself.
func (g *Gateway) stageLocal(in *inbound) error {
	ep := in.match.Endpoint
	if !ep.Local {
		return nil
	}
	var err error
	switch ep.Name {
	case "well_known":
		err = g.serveWellKnown(in)
	default:
		err = errUnrecognized()
	}
	if err != nil {
		return err
	}
	return errDone
}

func (g *Gateway) serveWellKnown(in *inbound) error {
	server := in.rt.cfg.WellKnown.Server
	if server == "" {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "No well-known delegation is configured", Reason: "no_well_known"}
	}
	body := appendJSONString([]byte(`{"m.server":`), server)
	body = append(body, '}')
	h := in.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=86400")
	in.w.Write(body)
	return nil
}
