// Package sigma owns auditwatch's native Sigma engine: it parses Sigma rules
// (specification 2.x) and correlation rules (v2) from YAML, compiles their
// detections once, and evaluates them over the original audit records
// (CloudTrail records, Vault/OpenBao audit entries) that schema.Event
// carries.
//
// A rule file may hold several YAML documents. Each rule is loaded,
// reported unsupported (a feature the engine does not evaluate, such as the
// legacy aggregation syntax; the rule is skipped with a warning) or
// rejected as invalid (the whole set is then rejected by Load).
//
// Log sources: product aws / service cloudtrail matches CloudTrail records
// with the field names of the raw record (eventSource, requestParameters.*,
// userIdentity.* …); EventBridge (detail) and LookupEvents (CloudTrailEvent)
// wrappers are removed first. product vault or openbao (service audit or
// none) matches Vault audit entries with their own field names (type,
// request.path, request.operation, auth.display_name, auth.policies,
// response.* …).
package sigma
