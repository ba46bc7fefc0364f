package trail

import (
	"context"
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
)

// PublicKey is one CloudTrail digest signing key.
type PublicKey struct {
	Fingerprint string
	Key         *rsa.PublicKey
	// Start and End bound the key's validity (zero: unbounded).
	Start, End time.Time
}

// KeySource finds the public key with a fingerprint, valid at t.
type KeySource interface {
	Key(ctx context.Context, fingerprint string, t time.Time) (*PublicKey, error)
}

// ErrNoKey means no known public key has the digest's fingerprint.
var ErrNoKey = errors.New("no CloudTrail public key has this fingerprint")

// ParsePublicKeyDER reads an RSA public key in PKCS #1 or
// SubjectPublicKeyInfo DER.
func ParsePublicKeyDER(der []byte) (*rsa.PublicKey, error) {
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key: neither PKCS #1 nor SubjectPublicKeyInfo DER: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T, want RSA", k)
	}
	return rk, nil
}

// Fingerprint is the hex MD5 of a key's PKCS #1 DER, the form CloudTrail's
// digestPublicKeyFingerprint takes for keys read from a file without one.
func Fingerprint(k *rsa.PublicKey) string {
	sum := md5.Sum(x509.MarshalPKCS1PublicKey(k))
	return hex.EncodeToString(sum[:])
}

func (k *PublicKey) validAt(t time.Time) bool {
	if !k.Start.IsZero() && t.Before(k.Start) {
		return false
	}
	if !k.End.IsZero() && t.After(k.End) {
		return false
	}
	return true
}

// StaticKeys is a fixed set of keys (from a file).
type StaticKeys []PublicKey

// Key returns the key with the fingerprint (validity is not enforced for
// keys a responder supplied).
func (s StaticKeys) Key(_ context.Context, fp string, _ time.Time) (*PublicKey, error) {
	for i := range s {
		if strings.EqualFold(s[i].Fingerprint, fp) {
			return &s[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoKey, fp)
}

// ParseKeysFile reads public keys from a file's content: the JSON that
// `aws cloudtrail list-public-keys` prints (PublicKeyList with base64
// Value, Fingerprint, ValidityStartTime, ValidityEndTime), or PEM blocks
// ("RSA PUBLIC KEY" PKCS #1 or "PUBLIC KEY" SubjectPublicKeyInfo; an
// optional "Fingerprint" PEM header, else the hex MD5 of the PKCS #1 DER).
func ParseKeysFile(b []byte) (StaticKeys, error) {
	trim := strings.TrimSpace(string(b))
	if strings.HasPrefix(trim, "{") {
		var doc struct {
			PublicKeyList []struct {
				Value             string
				Fingerprint       string
				ValidityStartTime json.RawMessage
				ValidityEndTime   json.RawMessage
			}
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("public keys JSON: %w", err)
		}
		var out StaticKeys
		for i, e := range doc.PublicKeyList {
			der, err := base64.StdEncoding.DecodeString(e.Value)
			if err != nil {
				return nil, fmt.Errorf("public keys JSON: PublicKeyList[%d].Value: %w", i, err)
			}
			k, err := ParsePublicKeyDER(der)
			if err != nil {
				return nil, fmt.Errorf("public keys JSON: PublicKeyList[%d]: %w", i, err)
			}
			pk := PublicKey{Fingerprint: e.Fingerprint, Key: k}
			if pk.Fingerprint == "" {
				pk.Fingerprint = Fingerprint(k)
			}
			pk.Start, _ = jsonTime(e.ValidityStartTime)
			pk.End, _ = jsonTime(e.ValidityEndTime)
			out = append(out, pk)
		}
		if len(out) == 0 {
			return nil, errors.New("public keys JSON: PublicKeyList is empty")
		}
		return out, nil
	}
	var out StaticKeys
	rest := b
	for n := 1; ; n++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" && blk.Type != "RSA PUBLIC KEY" {
			return nil, fmt.Errorf("public keys PEM: block %d: type %q, want PUBLIC KEY or RSA PUBLIC KEY", n, blk.Type)
		}
		k, err := ParsePublicKeyDER(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public keys PEM: block %d: %w", n, err)
		}
		fp := blk.Headers["Fingerprint"]
		if fp == "" {
			fp = Fingerprint(k)
		}
		out = append(out, PublicKey{Fingerprint: fp, Key: k})
	}
	if len(out) == 0 {
		return nil, errors.New("public keys: no PEM public key and not the JSON of list-public-keys")
	}
	return out, nil
}

// jsonTime reads the CLI's timestamps (RFC 3339 strings or epoch seconds).
func jsonTime(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return time.Parse(time.RFC3339, s)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, err
	}
	return time.Unix(int64(f), 0).UTC(), nil
}

// ListPublicKeysAPI is the part of the CloudTrail client APIKeys uses.
type ListPublicKeysAPI interface {
	ListPublicKeys(ctx context.Context, in *cloudtrail.ListPublicKeysInput, opts ...func(*cloudtrail.Options)) (*cloudtrail.ListPublicKeysOutput, error)
}

// APIKeys fetches keys with CloudTrail's ListPublicKeys and caches them by
// fingerprint; an unknown fingerprint asks the API again for the time
// around the digest (at most once per fingerprint per MinRefresh).
type APIKeys struct {
	API ListPublicKeysAPI
	// MinRefresh spaces repeated look-ups of one unknown fingerprint.
	MinRefresh time.Duration
	Now        func() time.Time

	mu     sync.Mutex
	keys   map[string]*PublicKey
	misses map[string]time.Time
	calls  int
}

// Calls is the number of ListPublicKeys requests made.
func (a *APIKeys) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// Key returns the cached key or asks ListPublicKeys for the digest's time.
func (a *APIKeys) Key(ctx context.Context, fp string, t time.Time) (*PublicKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if k, ok := a.keys[fp]; ok {
		return a.valid(k, t)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	refresh := a.MinRefresh
	if refresh == 0 {
		refresh = 5 * time.Minute
	}
	if last, ok := a.misses[fp]; ok && now().Sub(last) < refresh {
		return nil, fmt.Errorf("%w: %s", ErrNoKey, fp)
	}
	start, end := t.Add(-time.Hour), t.Add(time.Hour)
	if n := now(); end.After(n) {
		end = n
	}
	if start.After(end) {
		start = end
	}
	in := &cloudtrail.ListPublicKeysInput{StartTime: &start, EndTime: &end}
	for pages := 0; pages < 100; pages++ {
		a.calls++
		out, err := a.API.ListPublicKeys(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("cloudtrail ListPublicKeys: %w", err)
		}
		for i, pk := range out.PublicKeyList {
			if pk.Fingerprint == nil {
				continue
			}
			k, err := ParsePublicKeyDER(pk.Value)
			if err != nil {
				return nil, fmt.Errorf("cloudtrail ListPublicKeys: PublicKeyList[%d] (%s): %w", i, *pk.Fingerprint, err)
			}
			e := &PublicKey{Fingerprint: *pk.Fingerprint, Key: k}
			if pk.ValidityStartTime != nil {
				e.Start = *pk.ValidityStartTime
			}
			if pk.ValidityEndTime != nil {
				e.End = *pk.ValidityEndTime
			}
			if a.keys == nil {
				a.keys = map[string]*PublicKey{}
			}
			a.keys[e.Fingerprint] = e
		}
		if out.NextToken == nil || *out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	if k, ok := a.keys[fp]; ok {
		return a.valid(k, t)
	}
	if a.misses == nil {
		a.misses = map[string]time.Time{}
	}
	a.misses[fp] = now()
	return nil, fmt.Errorf("%w: %s", ErrNoKey, fp)
}

// valid returns k when it was valid at t (a key used outside its validity
// did not sign the digest).
func (a *APIKeys) valid(k *PublicKey, t time.Time) (*PublicKey, error) {
	if !k.validAt(t) {
		return nil, fmt.Errorf("%w: %s is not valid at %s", ErrNoKey, k.Fingerprint, t.Format(time.RFC3339))
	}
	return k, nil
}
