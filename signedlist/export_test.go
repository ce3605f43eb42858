package signedlist

// PollFileForTest looks at the list file once, as Run does.
func PollFileForTest(s *Source) error { return s.pollFile(false) }
