// Package trailtest builds signed CloudTrail trails (log files and a chain
// of digest files signed with a key made here) and serves them the way AWS
// does: objects with `signature` metadata from a local S3 endpoint, the key
// from a local CloudTrail ListPublicKeys endpoint. Tests of trail
// validation use it; nothing else does.
package trailtest

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"auditwatch/trail"
)

// Object is one stored object.
type Object struct {
	Body []byte // gzip
	Meta map[string]string
	// At is when CloudTrail delivered it.
	At time.Time
}

// Trail is a built trail.
type Trail struct {
	Bucket, Account, Region, Name string
	// Prefix is the trail's S3 key prefix ("" or ending in "/"); Org the
	// organization id of an organization trail ("" for an account trail).
	Prefix, Org string
	Key         *rsa.PrivateKey
	Fingerprint string
	Base        time.Time

	mu      sync.Mutex
	Objects map[string]*Object
	// Digests and Logs are keys in delivery order.
	Digests, Logs []string
	// Resigned digests get a .sig file in WriteDir.
	Resigned map[string]bool
	deleted  map[string]time.Time
	prevKey  string
	prevSig  string
	hourLogs []string
}

// NewKey makes an RSA key for signing digests.
func NewKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// New returns an empty trail starting at base (whole hour).
func New(key *rsa.PrivateKey, base time.Time) *Trail {
	return &Trail{Bucket: "trail-bucket", Account: "111122223333", Region: "eu-west-1", Name: "org-trail",
		Key: key, Fingerprint: trail.Fingerprint(&key.PublicKey), Base: base.UTC(), Objects: map[string]*Object{}}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Gunzip decompresses b.
func Gunzip(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		panic(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		panic(err)
	}
	return out
}

func (t *Trail) orgDir() string {
	if t.Org == "" {
		return ""
	}
	return t.Org + "/"
}

// AddBackfill delivers, at `at`, a _backfill digest listing log files
// that no regular digest listed (they are taken from the pending hour).
func (t *Trail) AddBackfill(start, end, at time.Time, logs ...string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := t.DigestKey(end, true)
	d := trail.Digest{AWSAccountID: t.Account, DigestStartTime: start.Format(time.RFC3339), DigestEndTime: end.Format(time.RFC3339),
		DigestS3Bucket: t.Bucket, DigestS3Object: key, Fingerprint: t.Fingerprint, SignatureAlgo: "SHA256withRSA", LogFiles: []trail.LogFile{}}
	for _, lk := range logs {
		sum := sha256.Sum256(Gunzip(t.Objects[lk].Body))
		d.LogFiles = append(d.LogFiles, trail.LogFile{S3Bucket: t.Bucket, S3Object: lk, HashValue: hex.EncodeToString(sum[:]), HashAlgorithm: "SHA-256"})
	}
	body, _ := json.Marshal(d)
	parsed, err := trail.ParseDigest(body)
	if err != nil {
		panic(err)
	}
	sig := Sign(t.Key, trail.SigningString(parsed, body))
	t.Objects[key] = &Object{Body: gz(body), At: at, Meta: map[string]string{"signature": sig, "signature-algorithm": "SHA256withRSA"}}
	t.Digests = append(t.Digests, key)
	return key
}

// HoldBack removes log files from the pending hour: the next digest will
// not list them (CloudTrail's processing delay, fixed by a backfill).
func (t *Trail) HoldBack(logs ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := t.hourLogs[:0]
	for _, k := range t.hourLogs {
		held := false
		for _, h := range logs {
			held = held || h == k
		}
		if !held {
			keep = append(keep, k)
		}
	}
	t.hourLogs = keep
}

// record is one CloudTrail record.
func (t *Trail) record(at time.Time, n int, name, source string) map[string]any {
	return map[string]any{
		"eventVersion": "1.08", "eventTime": at.Format(time.RFC3339), "eventSource": source,
		"eventName": name, "awsRegion": t.Region, "sourceIPAddress": "198.51.100.7",
		"userAgent": "aws-cli/2.15.0", "eventID": fmt.Sprintf("ev-%s-%d", at.Format("20060102T150405"), n),
		"eventType": "AwsApiCall", "recipientAccountId": t.Account, "readOnly": true,
		"userIdentity": map[string]any{"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::" + t.Account + ":user/alice",
			"accountId": t.Account, "accessKeyId": "AKIAEXAMPLE", "userName": "alice"},
		"requestParameters": map[string]any{"secretId": "prod/db"},
	}
}

// AddLog delivers a log file at `at` with n GetSecretValue records (and a
// StartLogging call when startLogging).
func (t *Trail) AddLog(at time.Time, n int, startLogging bool) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var recs []map[string]any
	for i := 0; i < n; i++ {
		recs = append(recs, t.record(at.Add(-time.Duration(n-i)*time.Second), i, "GetSecretValue", "secretsmanager.amazonaws.com"))
	}
	if startLogging {
		r := t.record(at.Add(-time.Second), n, "StartLogging", "cloudtrail.amazonaws.com")
		r["readOnly"] = false
		r["requestParameters"] = map[string]any{"name": t.Name}
		recs = append(recs, r)
	}
	body, _ := json.Marshal(map[string]any{"Records": recs})
	key := fmt.Sprintf("%sAWSLogs/%s%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_%s.json.gz", t.Prefix, t.orgDir(), t.Account, t.Region, at.Format("2006/01/02"),
		t.Account, t.Region, at.Format("20060102T1504Z"), fmt.Sprintf("Ab%014x", at.Unix()))
	t.Objects[key] = &Object{Body: gz(body), At: at}
	t.Logs = append(t.Logs, key)
	t.hourLogs = append(t.hourLogs, key)
	return key
}

// DigestKey is the key of a digest ending at end.
func (t *Trail) DigestKey(end time.Time, backfill bool) string {
	suffix := ""
	if backfill {
		suffix = "_backfill"
	}
	return fmt.Sprintf("%sAWSLogs/%s%s/CloudTrail-Digest/%s/%s/%s_CloudTrail-Digest_%s_%s_%s_%s%s.json.gz", t.Prefix, t.orgDir(), t.Account, t.Region, end.Format("2006/01/02"),
		t.Account, t.Region, t.Name, t.Region, end.Format("20060102T150405Z"), suffix)
}

// AddDigest delivers, at end+5m, the digest of [start, end] listing the log
// files delivered since the last digest. With starting, the previous
// fields are null; without a previous digest and not starting, the digest
// names one before the trail's first (as if the trail had run before).
func (t *Trail) AddDigest(start, end time.Time, starting bool) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := t.DigestKey(end, false)
	d := trail.Digest{AWSAccountID: t.Account, DigestStartTime: start.Format(time.RFC3339), DigestEndTime: end.Format(time.RFC3339),
		DigestS3Bucket: t.Bucket, DigestS3Object: key, Fingerprint: t.Fingerprint, SignatureAlgo: "SHA256withRSA"}
	for _, lk := range t.hourLogs {
		sum := sha256.Sum256(Gunzip(t.Objects[lk].Body))
		d.LogFiles = append(d.LogFiles, trail.LogFile{S3Bucket: t.Bucket, S3Object: lk, HashValue: hex.EncodeToString(sum[:]), HashAlgorithm: "SHA-256"})
	}
	if d.LogFiles == nil {
		d.LogFiles = []trail.LogFile{}
	}
	t.hourLogs = nil
	str := func(s string) *string { return &s }
	switch {
	case starting:
	case t.prevKey != "":
		prevBody := Gunzip(t.Objects[t.prevKey].Body)
		sum := sha256.Sum256(prevBody)
		d.PreviousS3Bucket, d.PreviousS3Object = str(t.Bucket), str(t.prevKey)
		d.PreviousHashValue, d.PreviousHashAlgo, d.PreviousSignature = str(hex.EncodeToString(sum[:])), str("SHA-256"), str(t.prevSig)
	default:
		before := t.DigestKey(start, false)
		d.PreviousS3Bucket, d.PreviousS3Object = str(t.Bucket), str(before)
		d.PreviousHashValue, d.PreviousHashAlgo, d.PreviousSignature = str(strings.Repeat("ab", 32)), str("SHA-256"), str(strings.Repeat("cd", 256))
	}
	body, _ := json.Marshal(d)
	parsed, err := trail.ParseDigest(body)
	if err != nil {
		panic(err)
	}
	sig := Sign(t.Key, trail.SigningString(parsed, body))
	t.Objects[key] = &Object{Body: gz(body), At: end.Add(5 * time.Minute), Meta: map[string]string{"signature": sig, "signature-algorithm": "SHA256withRSA"}}
	t.Digests = append(t.Digests, key)
	t.prevKey, t.prevSig = key, sig
	return key
}

// Sign signs s with SHA256withRSA and returns the hex signature.
func Sign(k *rsa.PrivateKey, s string) string {
	h := sha256.Sum256([]byte(s))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(sig)
}

// Build makes hours of trail from Base: per hour two log files (at :10
// and :40) and the digest of the hour, except for hours in skipDigest,
// whose log files the next digest lists.
func (t *Trail) Build(hours int, skipDigest ...int) {
	skip := map[int]bool{}
	for _, h := range skipDigest {
		skip[h] = true
	}
	start := t.Base
	for h := 0; h < hours; h++ {
		hb := t.Base.Add(time.Duration(h) * time.Hour)
		t.AddLog(hb.Add(10*time.Minute), 3, false)
		t.AddLog(hb.Add(40*time.Minute), 2, false)
		if skip[h] {
			continue
		}
		t.AddDigest(start, hb.Add(time.Hour), false)
		start = hb.Add(time.Hour)
	}
}

// EditByte changes one byte of a log file's content (a digit of the
// source address), keeping it valid JSON.
func (t *Trail) EditByte(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.Objects[key]
	body := Gunzip(o.Body)
	i := bytes.Index(body, []byte("198.51.100.7"))
	body[i+len("198.51.100.")] = '8'
	o.Body = gz(body)
}

// Delete removes an object (after CloudTrail delivered it).
func (t *Trail) Delete(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deleted == nil {
		t.deleted = map[string]time.Time{}
	}
	t.deleted[key] = t.Objects[key].At
	delete(t.Objects, key)
}

// Deleted lists the deleted objects with their delivery times.
func (t *Trail) Deleted() []Delivery {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Delivery
	for k, at := range t.deleted {
		out = append(out, Delivery{Key: k, At: at})
	}
	return out
}

// Resign replaces a digest's signature with one made by another key.
func (t *Trail) Resign(key string, other *rsa.PrivateKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.Objects[key]
	body := Gunzip(o.Body)
	d, err := trail.ParseDigest(body)
	if err != nil {
		panic(err)
	}
	o.Meta["signature"] = Sign(other, trail.SigningString(d, body))
	if t.Resigned == nil {
		t.Resigned = map[string]bool{}
	}
	t.Resigned[key] = true
}

// Delivery is one object in delivery order.
type Delivery struct {
	Key string
	At  time.Time
}

// Deliveries lists every object that exists, in delivery order.
func (t *Trail) Deliveries() []Delivery {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Delivery
	for k, o := range t.Objects {
		out = append(out, Delivery{Key: k, At: o.At})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// WriteFile writes one object under root (its key as the relative path);
// a digest's signature goes to a sibling .sig file when sig is true.
func (t *Trail) WriteFile(root, key string, sig bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.Objects[key]
	p := filepath.Join(root, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if sig && o.Meta["signature"] != "" {
		if err := writeAtomic(p+".sig", []byte(o.Meta["signature"]+"\n")); err != nil {
			return err
		}
	}
	return writeAtomic(p, o.Body)
}

// writeAtomic writes a hidden temporary file and renames it, so a watching
// directory source never sees it half written.
func writeAtomic(p string, b []byte) error {
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// WriteDir writes the whole trail under root; only the newest digest and
// re-signed ones get a .sig file (the others' signatures come from the
// next digest).
func (t *Trail) WriteDir(root string) error {
	newest := ""
	for _, d := range t.Deliveries() {
		if strings.Contains(d.Key, "CloudTrail-Digest") {
			newest = d.Key
		}
	}
	for _, d := range t.Deliveries() {
		if err := t.WriteFile(root, d.Key, d.Key == newest || t.Resigned[d.Key]); err != nil {
			return err
		}
	}
	return nil
}

// PublicKeysJSON is what `aws cloudtrail list-public-keys` prints for the
// trail's key.
func (t *Trail) PublicKeysJSON() []byte {
	b, _ := json.Marshal(map[string]any{"PublicKeyList": []map[string]any{{
		"Value": base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&t.Key.PublicKey)), "Fingerprint": t.Fingerprint,
		"ValidityStartTime": t.Base.Add(-24 * time.Hour).Format(time.RFC3339), "ValidityEndTime": t.Base.Add(30 * 24 * time.Hour).Format(time.RFC3339)}}})
	return b
}

// S3 serves the trail's objects over the S3 REST API with path-style
// addressing: GetObject (with x-amz-meta-* metadata) and ListObjectsV2.
func (t *Trail) S3() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
			w.WriteHeader(403)
			return
		}
		bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if bucket != t.Bucket {
			w.WriteHeader(404)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code></Error>`)
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if key == "" && r.URL.Query().Get("list-type") == "2" {
			type content struct {
				Key  string
				Size int
			}
			var res struct {
				XMLName     xml.Name `xml:"ListBucketResult"`
				Name        string
				Prefix      string
				KeyCount    int
				IsTruncated bool
				Contents    []content
			}
			res.Name, res.Prefix = t.Bucket, r.URL.Query().Get("prefix")
			var keys []string
			for k := range t.Objects {
				if strings.HasPrefix(k, res.Prefix) {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				res.Contents = append(res.Contents, content{Key: k, Size: len(t.Objects[k].Body)})
			}
			res.KeyCount = len(keys)
			w.Header().Set("Content-Type", "application/xml")
			xml.NewEncoder(w).Encode(res)
			return
		}
		o, ok := t.Objects[key]
		if !ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(404)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>%s</Key></Error>`, key)
			return
		}
		for k, v := range o.Meta {
			w.Header().Set("x-amz-meta-"+k, v)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(o.Body)))
		w.Header().Set("ETag", `"etag"`)
		w.Write(o.Body)
	})
}

// CloudTrail serves ListPublicKeys over the AWS JSON 1.1 protocol with
// the given keys (DER, PKCS #1); it counts calls in *calls when set.
func CloudTrail(keys []*rsa.PublicKey, from, to time.Time, calls *int, mu *sync.Mutex) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.Header.Get("X-Amz-Target")
		if r.Method != http.MethodPost || !strings.HasSuffix(target, "CloudTrail_20131101.ListPublicKeys") ||
			!strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"__type":"UnknownOperationException","message":%q}`, target)
			return
		}
		if mu != nil {
			mu.Lock()
			*calls++
			mu.Unlock()
		}
		var list []map[string]any
		for _, k := range keys {
			list = append(list, map[string]any{"Value": base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(k)),
				"Fingerprint": trail.Fingerprint(k), "ValidityStartTime": float64(from.Unix()), "ValidityEndTime": float64(to.Unix())})
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(map[string]any{"PublicKeyList": list})
	})
}

// Scenario is one way of tampering with a six-hour trail and the one
// finding kind (and severity) it must give; Want "" is an untouched trail.
type Scenario struct {
	Name   string
	Skip   []int // hours without a digest
	Tamper func(tr *Trail)
	Want   string
	Sev    string
}

// Scenarios are the tamperings every validation path is tested with;
// other is the key a forger re-signs with.
func Scenarios(other *rsa.PrivateKey) []Scenario {
	return []Scenario{
		{Name: "untouched"},
		{Name: "edited byte", Tamper: func(tr *Trail) { tr.EditByte(tr.Logs[5]) }, Want: trail.KindLogModified, Sev: "critical"},
		{Name: "deleted log file", Tamper: func(tr *Trail) { tr.Delete(tr.Logs[4]) }, Want: trail.KindLogMissing, Sev: "critical"},
		{Name: "deleted digest", Tamper: func(tr *Trail) { tr.Delete(tr.Digests[2]) }, Want: trail.KindChainBroken, Sev: "critical"},
		{Name: "re-signed digest", Tamper: func(tr *Trail) { tr.Resign(tr.Digests[2], other) }, Want: trail.KindBadSignature, Sev: "critical"},
		{Name: "two-hour gap", Skip: []int{2, 3}, Want: trail.KindGap, Sev: "high"},
	}
}

// BuildScenario builds the six-hour trail of sc from base.
func BuildScenario(key *rsa.PrivateKey, base time.Time, sc Scenario) *Trail {
	tr := New(key, base)
	tr.Build(6, sc.Skip...)
	if sc.Tamper != nil {
		sc.Tamper(tr)
	}
	return tr
}

// SQS is one SQS queue over the AWS JSON 1.0 protocol (ReceiveMessage,
// DeleteMessage, ChangeMessageVisibility), enough for the s3sqs source.
type SQS struct {
	mu   sync.Mutex
	msgs []*sqsMsg
	seq  int
}

type sqsMsg struct {
	id, body, receipt string
	visibleAt         time.Time
}

// Notify queues the S3 ObjectCreated notification of a key.
func (q *SQS) Notify(bucket, key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	body := fmt.Sprintf(`{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":%q},"object":{"key":%q,"eTag":"e%d"}}}]}`, bucket, key, q.seq)
	q.msgs = append(q.msgs, &sqsMsg{id: fmt.Sprintf("m-%d", q.seq), body: body})
}

// Left is the number of messages not deleted.
func (q *SQS) Left() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

func (q *SQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"__type":"com.amazonaws.sqs#%s","message":%q}`, typ, msg)
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	if !ok || !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
		fail(400, "InvalidAction", "want an authenticated AWS JSON 1.0 request")
		return
	}
	var in struct {
		MaxNumberOfMessages int
		WaitTimeSeconds     int
		VisibilityTimeout   *int
		ReceiptHandle       string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(400, "MalformedInput", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	switch op {
	case "ReceiveMessage":
		deadline := time.Now().Add(time.Duration(min(in.WaitTimeSeconds, 1)) * time.Second)
		for {
			q.mu.Lock()
			var out []map[string]any
			now := time.Now()
			for _, m := range q.msgs {
				if len(out) >= max(in.MaxNumberOfMessages, 1) || m.visibleAt.After(now) {
					continue
				}
				q.seq++
				m.receipt = fmt.Sprintf("rh-%s-%d", m.id, q.seq)
				m.visibleAt = now.Add(30 * time.Second)
				out = append(out, map[string]any{"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body,
					"MD5OfBody": fmt.Sprintf("%x", md5sum(m.body))})
			}
			q.mu.Unlock()
			if len(out) > 0 || !time.Now().Before(deadline) {
				json.NewEncoder(w).Encode(map[string]any{"Messages": out})
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	case "DeleteMessage", "ChangeMessageVisibility":
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, m := range q.msgs {
			if m.receipt == in.ReceiptHandle {
				if op == "DeleteMessage" {
					q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
				}
				io.WriteString(w, "{}")
				return
			}
		}
		fail(400, "ReceiptHandleIsInvalid", "stale receipt handle")
	default:
		fail(400, "InvalidAction", op)
	}
}

func md5sum(s string) [16]byte { return md5.Sum([]byte(s)) }
