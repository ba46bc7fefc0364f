// Package trail owns CloudTrail log file integrity validation: parsing
// digest files, checking each digest's SHA256withRSA signature (public
// keys from ListPublicKeys or a file, by fingerprint) and the chain of
// previous signatures, and comparing every listed log file's SHA-256 with
// what was read. Verifier holds the checks and their durable state; Live
// runs it beside the S3+SQS and directory sources and raises
// trail_integrity findings; Scan checks a stored trail (a directory or an
// S3 prefix) for `auditwatch trail verify`.
package trail
