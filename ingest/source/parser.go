package source

import (
	"errors"
	"io"

	"auditwatch/ingest"
)

// isParserRecordError recognises the record errors of the audit log
// parsers (ingest.RecordError).
func isParserRecordError(err error) bool {
	var re *ingest.RecordError
	return errors.As(err, &re)
}

// AuditParser returns the Parser of the audit log formats (CloudTrail,
// Vault/OpenBao; format "auto" detects per record).
func AuditParser(opts ingest.Options) Parser {
	return func(r io.Reader, name string) RecordReader {
		return ingest.NewReader(r, name, opts)
	}
}
