package auth

// RemoveSignatures returns the JSON object raw in canonical form without
// the signatures made by entity; every other member and signature is
// kept, so the signatures left still verify. It is what undoes
// [AddSignature]: a document sealed for a shared store goes back to what
// its server and any notary signed. Errors are *[Error] of KindBadJSON.
func RemoveSignatures(raw []byte, entity string) ([]byte, error) {
	canon, err := Canonicalize(nil, raw)
	if err != nil {
		return nil, newError(KindBadJSON, err, "cannot remove a signature: not valid canonical JSON")
	}
	if canon[0] != '{' {
		return nil, newError(KindBadJSON, nil, "cannot remove a signature: not a JSON object")
	}
	sigs, ok := memberValue(canon, "signatures")
	if !ok {
		return canon, nil
	}
	if sigs[0] != '{' {
		return nil, newError(KindBadJSON, nil, "cannot remove a signature: \"signatures\" is not an object")
	}
	if _, ok := memberValue(sigs, entity); !ok {
		return canon, nil
	}
	kept := make([]byte, 0, len(sigs))
	kept = append(kept, '{')
	err = eachMember(sigs, func(key, member []byte) bool {
		if compareKeyText(key, entity) == 0 {
			return true
		}
		if len(kept) > 1 {
			kept = append(kept, ',')
		}
		kept = append(kept, member...)
		return true
	})
	if err != nil {
		return nil, err
	}
	kept = append(kept, '}')
	return setMember(make([]byte, 0, len(canon)), canon, "signatures", kept)
}
