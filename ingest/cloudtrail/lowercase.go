package cloudtrail

import "github.com/valyala/fastjson"

// camelKeys maps the lower-cased field names some pipelines write (Panther
// lower-cases every key of some records) back to CloudTrail's names.
var camelKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"eventVersion", "eventTime", "eventSource", "eventName", "eventID", "eventType", "eventCategory",
		"awsRegion", "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
		"responseElements", "readOnly", "recipientAccountId", "userIdentity", "accountId", "accessKeyId",
		"userName", "invokedBy", "principalId", "sessionContext", "sessionIssuer", "secretId", "secretIdList",
		"resources", "ARN", "managementEvent", "requestID", "apiVersion", "additionalEventData",
		"p_event_time", "attributes", "mfaAuthenticated", "creationDate",
	} {
		m[lower(k)] = k
	}
	m["arn"] = "arn"
	return m
}()

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// IsLowercaseRecord reports whether v is a CloudTrail record whose keys
// were lower-cased.
func IsLowercaseRecord(v *fastjson.Value) bool {
	return v.Get("eventname") != nil || v.Get("eventsource") != nil || v.Get("eventversion") != nil
}

// CamelCase returns a copy of v (built in a) with lower-cased CloudTrail
// keys renamed to their usual spelling.
func CamelCase(v *fastjson.Value, a *fastjson.Arena) *fastjson.Value {
	switch v.Type() {
	case fastjson.TypeObject:
		o := a.NewObject()
		obj, _ := v.Object()
		obj.Visit(func(k []byte, e *fastjson.Value) {
			key := string(k)
			if c, ok := camelKeys[key]; ok {
				key = c
			}
			o.Set(key, CamelCase(e, a))
		})
		return o
	case fastjson.TypeArray:
		arr := a.NewArray()
		items, _ := v.Array()
		for i, e := range items {
			arr.SetArrayItem(i, CamelCase(e, a))
		}
		return arr
	}
	return v
}
