package cluster

// StallForTest stops renewing lock name as if this instance froze, without
// releasing it, so that it expires while "held".
func (s *CertStorage) StallForTest(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.locks[name]; h != nil {
		h.stopKeeping()
	}
}
