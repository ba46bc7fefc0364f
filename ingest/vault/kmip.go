package vault

import (
	"fmt"
	"strconv"

	"github.com/valyala/fastjson"

	"auditwatch/schema"
)

// kmipOps names the KMIP 1.x operation codes.
var kmipOps = map[uint64]string{
	0x01: "Create", 0x02: "CreateKeyPair", 0x03: "Register", 0x04: "ReKey", 0x05: "DeriveKey",
	0x06: "Certify", 0x07: "ReCertify", 0x08: "Locate", 0x09: "Check", 0x0a: "Get",
	0x0b: "GetAttributes", 0x0c: "GetAttributeList", 0x0d: "AddAttribute", 0x0e: "ModifyAttribute",
	0x0f: "DeleteAttribute", 0x10: "ObtainLease", 0x11: "GetUsageAllocation", 0x12: "Activate",
	0x13: "Revoke", 0x14: "Destroy", 0x15: "Archive", 0x16: "Recover", 0x17: "Validate",
	0x18: "Query", 0x19: "Cancel", 0x1a: "Poll", 0x1b: "Notify", 0x1c: "Put", 0x1d: "ReKeyKeyPair",
	0x1e: "DiscoverVersions", 0x1f: "Encrypt", 0x20: "Decrypt", 0x21: "Sign", 0x22: "SignatureVerify",
	0x23: "MAC", 0x24: "MACVerify", 0x25: "RNGRetrieve", 0x26: "RNGSeed", 0x27: "Hash",
	0x28: "CreateSplitKey", 0x29: "JoinSplitKey",
}

// kmipResultStatus names KMIP result status codes.
var kmipResultStatus = map[uint64]string{0: "Success", 1: "OperationFailed", 2: "OperationPending", 3: "OperationUndone"}

// parseKMIP fills a KMIP entry: the client is its TLS certificate, the
// action the KMIP operation, the outcome the batch item's ResultStatus.
func parseKMIP(v, req *fastjson.Value, ev *schema.Event) {
	if serial := str(req, "client_certificate_serial_number"); serial != "" {
		ev.Principal = "cert:" + serial
		ev.PrincipalName = serial
		ev.PrincipalType = "certificate"
	} else {
		ev.PrincipalType = schema.PrincipalTypeAnonymous
	}
	ev.MountType = "kmip"
	ev.AuthMethod = "cert"
	op := "unknown"
	if code, ok := kmipItem(req.Get("data", "kmip_request"), "Operation"); ok {
		if name, ok := kmipOps[code]; ok {
			op = name
		} else {
			op = fmt.Sprintf("0x%08x", code)
		}
	}
	ev.Action = "vault:kmip:" + op
	ev.Resource = "kmip/" + op
	ev.Outcome = schema.OutcomeSuccess
	if e := str(v, "error"); e != "" {
		ev.Outcome = schema.OutcomeFailure
		ev.Error = CleanError(e)
		ev.FailureKind = schema.FailureOther
	}
	resp := v.Get("response", "data", "kmip_response")
	if resp == nil {
		return
	}
	if code, ok := kmipItem(resp, "ResultStatus"); ok && code != 0 && code != 2 {
		ev.Outcome = schema.OutcomeFailure
		name := kmipResultStatus[code]
		if name == "" {
			name = fmt.Sprintf("0x%08x", code)
		}
		ev.Error = "kmip: " + name
		if reason, ok := kmipItem(resp, "ResultReason"); ok {
			ev.Error += fmt.Sprintf(" (reason 0x%02x)", reason)
			if reason == 0x0c { // Permission Denied
				ev.FailureKind = schema.FailurePermissionDenied
			} else if reason == 0x01 { // Item Not Found
				ev.FailureKind = schema.FailureNotFound
			}
		}
		if ev.FailureKind == "" {
			ev.FailureKind = schema.FailureOther
		}
	}
}

// kmipItem finds the first tag named tag in a KMIP TTLV tree (bounded
// walk) and returns its integer value.
func kmipItem(v *fastjson.Value, tag string) (uint64, bool) {
	budget := 256
	var walk func(v *fastjson.Value, depth int) (uint64, bool)
	walk = func(v *fastjson.Value, depth int) (uint64, bool) {
		if v == nil || depth > 16 || budget <= 0 {
			return 0, false
		}
		budget--
		switch v.Type() {
		case fastjson.TypeArray:
			a, _ := v.Array()
			for _, e := range a {
				if n, ok := walk(e, depth+1); ok {
					return n, true
				}
			}
		case fastjson.TypeObject:
			if string(v.GetStringBytes("tag")) == tag {
				s := string(v.GetStringBytes("value"))
				n, err := strconv.ParseUint(s, 0, 64)
				return n, err == nil
			}
			return walk(v.Get("value"), depth+1)
		}
		return 0, false
	}
	return walk(v, 0)
}
