package stream

import (
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fastjson"

	"auditwatch/schema"
)

// ErrEventJSON marks an events-topic value that is not a schema.Event.
var ErrEventJSON = errors.New("bad event JSON")

var eventParsers fastjson.ParserPool

// DecodeEvent fills ev from v, the JSON of schema.Event (as AppendJSON or
// encoding/json write it), without reflection. Unknown keys are ignored,
// as encoding/json does; a value of the wrong type is an error naming the
// key.
func DecodeEvent(v []byte, ev *schema.Event) error {
	p := eventParsers.Get()
	defer eventParsers.Put(p)
	val, err := p.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEventJSON, err)
	}
	o, err := val.Object()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrEventJSON, err)
	}
	*ev = schema.Event{}
	var bad error
	o.Visit(func(k []byte, x *fastjson.Value) {
		if bad != nil {
			return
		}
		key := string(k)
		str := func(dst *string) {
			if x.Type() == fastjson.TypeNull {
				return
			}
			b, err := x.StringBytes()
			if err != nil {
				bad = fmt.Errorf("%w: %s: %v", ErrEventJSON, key, err)
				return
			}
			*dst = string(b)
		}
		boolean := func(dst *bool) {
			if x.Type() == fastjson.TypeNull {
				return
			}
			b, err := x.Bool()
			if err != nil {
				bad = fmt.Errorf("%w: %s: %v", ErrEventJSON, key, err)
				return
			}
			*dst = b
		}
		switch key {
		case "time":
			var s string
			str(&s)
			if bad == nil && s != "" {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					bad = fmt.Errorf("%w: time: %v", ErrEventJSON, err)
					return
				}
				ev.Time = t
			}
		case "source":
			str(&ev.Source)
		case "id":
			str(&ev.ID)
		case "principal":
			str(&ev.Principal)
		case "principal_name":
			str(&ev.PrincipalName)
		case "principal_type":
			str(&ev.PrincipalType)
		case "session":
			str(&ev.Session)
		case "account":
			str(&ev.Account)
		case "access_key":
			str(&ev.AccessKey)
		case "issued_key":
			str(&ev.IssuedKey)
		case "lease_id":
			str(&ev.LeaseID)
		case "key_principal":
			str(&ev.KeyPrincipal)
		case "key_issue":
			str(&ev.KeyIssue)
		case "country":
			str(&ev.Country)
		case "as_org":
			str(&ev.ASOrg)
		case "net_label":
			str(&ev.NetLabel)
		case "asn":
			if x.Type() == fastjson.TypeNull {
				return
			}
			n, err := x.Int()
			if err != nil {
				bad = fmt.Errorf("%w: asn: %v", ErrEventJSON, err)
				return
			}
			ev.ASN = n
		case "policies":
			if x.Type() == fastjson.TypeNull {
				return
			}
			arr, err := x.Array()
			if err != nil {
				bad = fmt.Errorf("%w: policies: %v", ErrEventJSON, err)
				return
			}
			ev.Policies = make([]string, 0, len(arr))
			for _, e := range arr {
				b, err := e.StringBytes()
				if err != nil {
					bad = fmt.Errorf("%w: policies: %v", ErrEventJSON, err)
					return
				}
				ev.Policies = append(ev.Policies, string(b))
			}
		case "token_hmac":
			str(&ev.TokenHMAC)
		case "token_accessor":
			str(&ev.TokenAccessor)
		case "auth_method":
			str(&ev.AuthMethod)
		case "action":
			str(&ev.Action)
		case "resource":
			str(&ev.Resource)
		case "mount":
			str(&ev.Mount)
		case "mount_type":
			str(&ev.MountType)
		case "namespace":
			str(&ev.Namespace)
		case "region":
			str(&ev.Region)
		case "source_ip":
			str(&ev.SourceIP)
		case "source_ip_raw":
			str(&ev.SourceIPRaw)
		case "source_is_service":
			boolean(&ev.SourceIsService)
		case "user_agent":
			str(&ev.UserAgent)
		case "outcome":
			str(&ev.Outcome)
		case "error":
			str(&ev.Error)
		case "failure_kind":
			str(&ev.FailureKind)
		case "auth":
			boolean(&ev.Auth)
		case "read_only":
			boolean(&ev.ReadOnly)
		case "http_status":
			if x.Type() == fastjson.TypeNull {
				return
			}
			n, err := x.Int()
			if err != nil {
				bad = fmt.Errorf("%w: http_status: %v", ErrEventJSON, err)
				return
			}
			ev.HTTPStatus = n
		}
	})
	return bad
}
