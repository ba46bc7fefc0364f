// Package webhook owns the generic webhook output: each finding is POSTed
// as one JSON object in the OCSF (Open Cybersecurity Schema Framework)
// 1.1 Detection Finding class (class_uid 2004), and each raw event as an
// OCSF API Activity (class_uid 6003) object.
//
// Why OCSF Detection Finding rather than Elastic ECS: a finding is a
// detection about other events, with evidence, a severity, a first/last
// seen span and a lifecycle (created, then updated as repeats arrive).
// OCSF has a class for exactly that, with typed slots for each
// (finding_info.related_events, evidences, activity_id Create/Update,
// severity_id), and it is vendor-neutral: Amazon Security Lake, Splunk and
// many SOAR tools ingest it natively. ECS describes single log documents;
// a detection in ECS means borrowing event.kind=alert plus rule.* and
// threat.* fields with no standard place for the evidence list or the
// update lifecycle. Fields OCSF has no slot for (dedupe key, revision,
// detector attributes) go in "unmapped", as OCSF prescribes.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"auditwatch/alert/notify"
	"auditwatch/internal/redact"
	"auditwatch/schema"
)

// Notifier POSTs to one URL.
type Notifier struct {
	cfg   Config
	log   *slog.Logger
	http  *http.Client
	token string
	clock notify.Clock
}

// New builds the output, reading the token (when configured) now.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	cfg.SetDefaults()
	if err := cfg.Validate("webhook"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{cfg: cfg, log: logger, http: &http.Client{Timeout: cfg.Timeout.D()}, clock: notify.RealClock{}}
	if !cfg.Token.IsZero() {
		tok, err := cfg.Token.Value()
		if err != nil {
			return nil, fmt.Errorf("webhook token %s: %w", cfg.Token, err)
		}
		n.token = tok
	}
	// The URL's credentials and the header values are masked wherever
	// they appear (the token is, being a secret).
	redact.Register(redact.URLParts(cfg.URL)...)
	for _, v := range cfg.Headers {
		redact.Register(v)
	}
	return n, nil
}

// OCSF severity_id of a finding severity.
func severityID(s schema.Severity) int {
	switch s {
	case schema.SeverityInfo:
		return 1
	case schema.SeverityLow:
		return 2
	case schema.SeverityMedium:
		return 3
	case schema.SeverityHigh:
		return 4
	case schema.SeverityCritical:
		return 5
	}
	return 0
}

// Finding renders a as an OCSF Detection Finding.
func Finding(a notify.Alert) map[string]any {
	f := a.Finding
	activity, activityName := 1, "Create"
	if a.Update {
		activity, activityName = 2, "Update"
	}
	related := make([]map[string]any, 0, len(f.EventIDs))
	for _, id := range f.EventIDs {
		related = append(related, map[string]any{"uid": id})
	}
	fi := map[string]any{
		"uid":            f.ID,
		"title":          f.Summary,
		"desc":           f.Reason,
		"types":          []string{f.Detector},
		"analytic":       map[string]any{"name": f.Detector, "type_id": 1, "type": "Rule"},
		"related_events": related,
	}
	if title := f.Attributes["rule_title"]; title != "" {
		// a Sigma rule: the analytic is the rule, with its author (DRL)
		fi["analytic"] = map[string]any{"name": title, "uid": f.Attributes["rule_id"], "type_id": 1, "type": "Rule",
			"desc": "author: " + f.Attributes["author"]}
	}
	if ts := f.Attributes["techniques"]; ts != "" {
		var attacks []map[string]any
		for _, t := range strings.Split(ts, ",") {
			attacks = append(attacks, map[string]any{"technique": map[string]any{"uid": t}, "version": "ATT&CK"})
		}
		fi["attacks"] = attacks
	}
	if !f.FirstTime.IsZero() {
		fi["first_seen_time"] = f.FirstTime.UnixMilli()
	}
	if !f.LastTime.IsZero() {
		fi["last_seen_time"] = f.LastTime.UnixMilli()
	}
	out := map[string]any{
		"class_uid":     2004,
		"class_name":    "Detection Finding",
		"category_uid":  2,
		"category_name": "Findings",
		"activity_id":   activity,
		"activity_name": activityName,
		"type_uid":      200400 + activity,
		"severity_id":   severityID(f.Severity),
		"severity":      titleCase(string(f.Severity)),
		"status_id":     1,
		"status":        "New",
		"time":          f.Time.UnixMilli(),
		"count":         max(f.Count, 1),
		"message":       f.Summary,
		"metadata": map[string]any{
			"version":         "1.1.0",
			"uid":             f.ID,
			"correlation_uid": f.DedupeKey,
			"product":         map[string]any{"name": "auditwatch", "vendor_name": "auditwatch"},
			"log_name":        f.Source,
		},
		"finding_info": fi,
		"actor": map[string]any{"user": map[string]any{"uid": f.Principal, "name": f.PrincipalName,
			"account": map[string]any{"uid": f.Account}}},
		"resources": []map[string]any{{"uid": f.Resource, "type": "secret"}},
		"unmapped": map[string]any{
			"dedupe_key":  f.DedupeKey,
			"revision":    f.Revision,
			"repeat":      a.Repeat,
			"group_count": a.GroupCount,
			"late":        f.Late,
			"attributes":  f.Attributes,
		},
	}
	if f.SourceIP != "" {
		out["src_endpoint"] = map[string]any{"ip": f.SourceIP}
	}
	return out
}

// Event renders a raw event as an OCSF API Activity.
func Event(e schema.Event) map[string]any {
	status, statusID := "Success", 1
	if e.Failed() {
		status, statusID = "Failure", 2
	}
	out := map[string]any{
		"class_uid":     6003,
		"class_name":    "API Activity",
		"category_uid":  6,
		"category_name": "Application Activity",
		"activity_id":   99,
		"activity_name": "Other",
		"type_uid":      600399,
		"severity_id":   1,
		"time":          e.Time.UnixMilli(),
		"status":        status,
		"status_id":     statusID,
		"status_detail": e.Error,
		"metadata": map[string]any{"version": "1.1.0", "uid": e.ID, "log_name": e.Source,
			"product": map[string]any{"name": "auditwatch", "vendor_name": "auditwatch"}},
		"api":          map[string]any{"operation": e.Action},
		"actor":        map[string]any{"user": map[string]any{"uid": e.Principal, "name": e.PrincipalName, "type": e.PrincipalType, "account": map[string]any{"uid": e.Account}}},
		"resources":    []map[string]any{{"uid": e.Resource, "type": "secret"}},
		"http_request": map[string]any{"user_agent": e.UserAgent},
		"unmapped":     map[string]any{"event": e},
	}
	if e.SourceIP != "" {
		out["src_endpoint"] = map[string]any{"ip": e.SourceIP}
	}
	return out
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// EncodeFinding returns the request body for a.
func EncodeFinding(a notify.Alert) ([]byte, error) {
	b, err := json.Marshal(Finding(a))
	if err != nil {
		return nil, notify.Permanent(notify.ReasonEncode, fmt.Errorf("webhook: %w", err))
	}
	return notify.InertJSON(b), nil
}

// Notify posts one finding, with an Idempotency-Key header of the finding
// id and revision (delivery is at-least-once; receivers drop repeats).
func (n *Notifier) Notify(ctx context.Context, a notify.Alert) error {
	b, err := EncodeFinding(a)
	if err != nil {
		return err
	}
	return n.post(ctx, b, IdempotencyKey(a))
}

// IdempotencyKey is the Idempotency-Key header value of a finding
// revision: "<finding id>:<revision>".
func IdempotencyKey(a notify.Alert) string {
	return a.Finding.ID + ":" + strconv.Itoa(a.Finding.Revision)
}

// SendEvents posts the batch as one JSON array of API Activity objects.
func (n *Notifier) SendEvents(ctx context.Context, evs []schema.Event) error {
	arr := make([]map[string]any, len(evs))
	for i, e := range evs {
		arr[i] = Event(e)
	}
	b, err := json.Marshal(arr)
	if err != nil {
		return notify.Permanent(notify.ReasonEncode, fmt.Errorf("webhook: %w", err))
	}
	return n.post(ctx, notify.InertJSON(b), "")
}

func (n *Notifier) post(ctx context.Context, body []byte, key string) error {
	return redact.Error(n.postOnce(ctx, body, key))
}

func (n *Notifier) postOnce(ctx context.Context, body []byte, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(notify.ReasonEncode, fmt.Errorf("webhook: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for k, v := range n.cfg.Headers {
		req.Header.Set(k, v)
	}
	if n.token != "" {
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return redact.Error(fmt.Errorf("webhook post: %w", err))
	}
	defer resp.Body.Close()
	if err := notify.FromHTTP(resp, n.clock.Now()); err != nil {
		return fmt.Errorf("webhook post: %w", err)
	}
	return nil
}

// Close releases idle connections.
func (n *Notifier) Close() error {
	n.http.CloseIdleConnections()
	return nil
}
