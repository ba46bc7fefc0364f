// Package e2e owns the end-to-end test of the whole system: generated
// CloudTrail and Vault/OpenBao traffic with labelled anomalies flows through
// `auditwatch ingest`, an in-process Kafka, `auditwatch detect` and
// `auditwatch alert`, each a separate process of the built binary with its
// own config, into a local Slack Web API server, a real rsyslogd (CEF over
// TCP) and a real ClickHouse server, and the runbook queries are asked of
// what was stored. The package has no code outside its tests.
package e2e
