package gateway

import "net/http"

// The stages below are completed when auth and policy land.

func (g *Gateway) stageXMatrix(in *inbound) error {
	if !in.needsXMatrix() {
		return nil
	}
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "X-Matrix verification unavailable", Reason: "unavailable"}
}
func (g *Gateway) stageDestination(in *inbound) error { return nil }
func (g *Gateway) stageOriginKey(in *inbound) error   { return nil }
func (g *Gateway) stageSignature(in *inbound) error   { return nil }

type xMatrixHeader struct{}

func (g *Gateway) checkJSONBody(in *inbound) error { return nil }
