package trail_test

import (
	"context"
	"testing"
	"time"

	"auditwatch/trail"
)

// FuzzParseDigest: any bytes either parse or give an error; a parsed
// digest has a signing string and can be judged without a panic.
func FuzzParseDigest(f *testing.F) {
	f.Add([]byte(`{"awsAccountId":"1","digestStartTime":"2026-11-03T08:00:00Z","digestEndTime":"2026-11-03T09:00:00Z","digestS3Bucket":"b","digestS3Object":"AWSLogs/1/CloudTrail-Digest/r/2026/11/03/1_CloudTrail-Digest_r_t_r_20261103T090000Z.json.gz","digestPublicKeyFingerprint":"ab","digestSignatureAlgorithm":"SHA256withRSA","previousDigestSignature":null,"previousDigestS3Object":null,"logFiles":[]}`))
	f.Add([]byte(`{"logFiles":[{"s3Object":"x","hashValue":"zz"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := trail.ParseDigest(b)
		if err != nil {
			return
		}
		if trail.SigningString(d, b) == "" {
			t.Fatal("empty signing string")
		}
		v := trail.NewVerifier(trail.Config{}, trail.StaticKeys{}, nil)
		v.Digest(context.Background(), d.DigestS3Object, b, "00", time.Unix(0, 0))
		v.LogFile("AWSLogs/1/CloudTrail/r/2026/11/03/x.json.gz", "00", time.Unix(0, 0))
		v.Finish(context.Background(), time.Unix(1e9, 0))
		v.Take()
	})
}

// FuzzParseKeysFile: any bytes either give keys or an error.
func FuzzParseKeysFile(f *testing.F) {
	f.Add([]byte(`{"PublicKeyList":[{"Value":"AAAA","Fingerprint":"ab"}]}`))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := trail.ParseKeysFile(b)
		if err == nil && len(ks) == 0 {
			t.Fatal("no error and no keys")
		}
	})
}
