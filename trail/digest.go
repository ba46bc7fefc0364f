package trail

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// Digest is one CloudTrail digest file, as AWS documents its structure.
type Digest struct {
	AWSAccountID      string    `json:"awsAccountId"`
	DigestStartTime   string    `json:"digestStartTime"`
	DigestEndTime     string    `json:"digestEndTime"`
	DigestS3Bucket    string    `json:"digestS3Bucket"`
	DigestS3Object    string    `json:"digestS3Object"`
	Fingerprint       string    `json:"digestPublicKeyFingerprint"`
	SignatureAlgo     string    `json:"digestSignatureAlgorithm"`
	NewestEventTime   *string   `json:"newestEventTime"`
	OldestEventTime   *string   `json:"oldestEventTime"`
	PreviousS3Bucket  *string   `json:"previousDigestS3Bucket"`
	PreviousS3Object  *string   `json:"previousDigestS3Object"`
	PreviousHashValue *string   `json:"previousDigestHashValue"`
	PreviousHashAlgo  *string   `json:"previousDigestHashAlgorithm"`
	PreviousSignature *string   `json:"previousDigestSignature"`
	LogFiles          []LogFile `json:"logFiles"`

	start, end time.Time
}

// LogFile is one log file a digest lists.
type LogFile struct {
	S3Bucket        string `json:"s3Bucket"`
	S3Object        string `json:"s3Object"`
	HashValue       string `json:"hashValue"`
	HashAlgorithm   string `json:"hashAlgorithm"`
	NewestEventTime string `json:"newestEventTime"`
	OldestEventTime string `json:"oldestEventTime"`
}

// Start and End are the digest's time range (log file delivery times).
func (d *Digest) Start() time.Time { return d.start }

// End is the digest's end time.
func (d *Digest) End() time.Time { return d.end }

// Starting reports whether d starts a new chain: its previous-digest
// fields are null (the first digest after logging or validation was turned
// on).
func (d *Digest) Starting() bool {
	return d.PreviousSignature == nil && d.PreviousS3Object == nil
}

// PreviousID is the identity of the previous digest ("" for a starting digest).
func (d *Digest) PreviousID() string {
	if d.PreviousS3Object == nil {
		return ""
	}
	return ObjectID(*d.PreviousS3Object)
}

// maxLogFiles bounds the log files one digest may list (CloudTrail lists
// an hour of deliveries; this is far above any real count).
const maxLogFiles = 1_000_000

// ParseDigest decodes an uncompressed digest file.
func ParseDigest(b []byte) (*Digest, error) {
	var d Digest
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"awsAccountId", d.AWSAccountID}, {"digestS3Bucket", d.DigestS3Bucket},
		{"digestS3Object", d.DigestS3Object}, {"digestPublicKeyFingerprint", d.Fingerprint},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("digest: %s: missing", f.name))
		}
	}
	var err error
	if d.start, err = time.Parse(time.RFC3339, d.DigestStartTime); err != nil {
		errs = append(errs, fmt.Errorf("digest: digestStartTime: %w", err))
	}
	if d.end, err = time.Parse(time.RFC3339, d.DigestEndTime); err != nil {
		errs = append(errs, fmt.Errorf("digest: digestEndTime: %w", err))
	}
	if d.SignatureAlgo != "" && d.SignatureAlgo != "SHA256withRSA" {
		errs = append(errs, fmt.Errorf("digest: digestSignatureAlgorithm %q: only SHA256withRSA is known", d.SignatureAlgo))
	}
	if len(d.LogFiles) > maxLogFiles {
		errs = append(errs, fmt.Errorf("digest: %d log files listed, more than %d", len(d.LogFiles), maxLogFiles))
	}
	for i, lf := range d.LogFiles {
		if lf.S3Object == "" {
			errs = append(errs, fmt.Errorf("digest: logFiles[%d].s3Object: missing", i))
		}
		if lf.HashAlgorithm != "" && lf.HashAlgorithm != "SHA-256" {
			errs = append(errs, fmt.Errorf("digest: logFiles[%d].hashAlgorithm %q: only SHA-256 is known", i, lf.HashAlgorithm))
		}
		if _, err := hex.DecodeString(lf.HashValue); err != nil || len(lf.HashValue) != 64 {
			errs = append(errs, fmt.Errorf("digest: logFiles[%d].hashValue: not a hex SHA-256", i))
		}
	}
	if (d.PreviousSignature == nil) != (d.PreviousS3Object == nil) {
		errs = append(errs, errors.New("digest: previousDigestSignature and previousDigestS3Object must both be null or both set"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &d, nil
}

// SigningString is the data CloudTrail signs for a digest: the end time,
// the digest's S3 path (bucket/key), the hex SHA-256 of the uncompressed
// digest file and the previous digest's hex signature ("null" for a
// starting digest), joined by newlines.
func SigningString(d *Digest, uncompressed []byte) string {
	prev := "null"
	if d.PreviousSignature != nil {
		prev = *d.PreviousSignature
	}
	sum := sha256.Sum256(uncompressed)
	return d.DigestEndTime + "\n" + d.DigestS3Bucket + "/" + d.DigestS3Object + "\n" + hex.EncodeToString(sum[:]) + "\n" + prev
}

// ObjectID is the identity of a CloudTrail object (log or digest file)
// independent of where it was read: its key from "AWSLogs/" on. S3 keys,
// local paths of a synced copy and prefixed keys of one object agree.
// A name without "AWSLogs/" is its own identity (slashes normalized).
func ObjectID(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	if i := strings.LastIndex(name, "AWSLogs/"); i >= 0 {
		return name[i:]
	}
	return name
}

// IsDigestName reports whether a key or path names a CloudTrail digest
// file (under CloudTrail-Digest/, a .json.gz or .json).
func IsDigestName(name string) bool {
	name = strings.ReplaceAll(name, "\\", "/")
	if !strings.Contains("/"+name, "/CloudTrail-Digest/") {
		return false
	}
	return strings.HasSuffix(name, ".json.gz") || strings.HasSuffix(name, ".json")
}

// IsBackfill reports whether a digest name is a _backfill digest.
func IsBackfill(name string) bool {
	return strings.HasSuffix(strings.TrimSuffix(strings.TrimSuffix(name, ".gz"), ".json"), "_backfill")
}

// stampRE finds the delivery timestamp in a CloudTrail file name
// (…_20150817T1505Z_… for log files, …_20150817T150131Z for digests).
var stampRE = regexp.MustCompile(`_(\d{8}T\d{4}(\d{2})?Z)(_|\.|$)`)

// NameTime returns the delivery time encoded in a CloudTrail file name.
func NameTime(name string) (time.Time, bool) {
	m := stampRE.FindAllStringSubmatch(path.Base(name), -1)
	if len(m) == 0 {
		return time.Time{}, false
	}
	s := m[len(m)-1][1]
	layout := "20060102T1504Z"
	if len(s) == len("20060102T150405Z") {
		layout = "20060102T150405Z"
	}
	t, err := time.Parse(layout, s)
	return t, err == nil
}

// scope is the account and region a CloudTrail object belongs to, read
// from its path (AWSLogs/[o-id/]account/CloudTrail[-Digest]/region/…).
func scope(id string) string {
	parts := strings.Split(id, "/")
	for i := 1; i+2 < len(parts); i++ {
		if parts[i+1] == "CloudTrail" || parts[i+1] == "CloudTrail-Digest" {
			return parts[i] + "/" + parts[i+2]
		}
	}
	return ""
}

// chainKey names the chain a digest belongs to: its scope (organization
// id included) and its file name without the end timestamp.
func chainKey(id string) string {
	base := path.Base(id)
	if loc := stampRE.FindAllStringIndex(base, -1); len(loc) > 0 {
		base = base[:loc[len(loc)-1][0]]
	}
	dir := id
	if i := strings.Index(id, "/CloudTrail-Digest/"); i >= 0 {
		dir = id[:i]
	}
	return dir + "|" + scope(id) + "|" + base
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
