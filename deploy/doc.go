// Package deploy holds auditwatch's deployment material — the compose file
// for one host, Kubernetes manifests, the Vault/OpenBao audit device setup
// and the AWS IAM, S3 and SQS setup — and the tests that check it against
// the code: every manifest parses, ports and topics agree with the configs
// the stages load, every shipped config passes check-config, and nothing
// committed looks like a real credential.
package deploy
