package gen

import "time"

// CloudTrail rendering: one record as AWS delivers it (compact JSON, keys in
// CloudTrail's order), written straight into a byte slice.

const (
	ctSrcSecrets = "secretsmanager"
	ctSrcKMS     = "kms"
	ctSrcSTS     = "sts"
	ctSrcSignin  = "signin"
	ctSrcTrail   = "cloudtrail"
)

var tlsSuites = [...]string{
	`{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"`,
	`{"tlsVersion":"TLSv1.2","cipherSuite":"ECDHE-RSA-AES128-GCM-SHA256","clientProvidedHostHeader":"`,
}

func ctEvent(k opKind) (name, src string, readOnly bool) {
	switch k {
	case ctGetSecretValue:
		return "GetSecretValue", ctSrcSecrets, true
	case ctDescribeSecret:
		return "DescribeSecret", ctSrcSecrets, true
	case ctPutSecretValue:
		return "PutSecretValue", ctSrcSecrets, false
	case ctListSecrets:
		return "ListSecrets", ctSrcSecrets, true
	case ctDecrypt, ctDecryptSSM:
		return "Decrypt", ctSrcKMS, true
	case ctGenerateDataKey:
		return "GenerateDataKey", ctSrcKMS, true
	case ctAssumeRole:
		return "AssumeRole", ctSrcSTS, true
	case ctGetCallerIdentity:
		return "GetCallerIdentity", ctSrcSTS, true
	case ctConsoleLogin:
		return "ConsoleLogin", ctSrcSignin, false
	case ctStopLogging:
		return "StopLogging", ctSrcTrail, false
	case ctDeleteTrail:
		return "DeleteTrail", ctSrcTrail, false
	}
	return "Unknown", "unknown", true
}

func appendStr(dst []byte, key, val string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, `":"`...)
	dst = append(dst, val...)
	return append(dst, '"')
}

// appendCloudTrail appends o as one CloudTrail record (no trailing newline)
func (g *Generator) appendCloudTrail(dst []byte, o *op) []byte {
	pr := o.p
	acc := pr.acct
	r := g.r
	invoker := "secretsmanager.amazonaws.com"
	switch o.kind {
	case ctDecrypt:
		// Secrets Manager decrypts the secret with KMS on the caller's behalf.
		o.viaService = true
	case ctDecryptSSM:
		// Parameter Store decrypts a SecureString; CloudTrail names no service.
		o.viaService = true
		invoker = "AWS Internal"
	}
	name, src, readOnly := ctEvent(o.kind)
	region := acc.region
	if o.kind == ctConsoleLogin {
		region = "us-east-1"
	}
	version := "1.09"
	if o.kind == ctDecrypt || o.kind == ctDecryptSSM || o.kind == ctGenerateDataKey {
		version = "1.08"
	}
	pr.ensureSession(r, o.t)

	dst = append(dst, `{"eventVersion":"`...)
	dst = append(dst, version...)
	dst = append(dst, `","userIdentity":`...)
	switch {
	case o.root:
		dst = append(dst, `{"type":"Root","principalId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","arn":"arn:aws:iam::`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `:root","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","accessKeyId":""}`...)
	case o.kind == ctConsoleLogin && o.fail == failUnknownUser:
		dst = append(dst, `{"type":"IAMUser","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","accessKeyId":"","userName":"HIDDEN_DUE_TO_SECURITY_REASONS"}`...)
	case o.kind == ctConsoleLogin && o.fail != failNone:
		dst = append(dst, `{"type":"IAMUser","principalId":"`...)
		dst = append(dst, pr.principalID...)
		dst = append(dst, `","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","accessKeyId":"","userName":"`...)
		dst = append(dst, pr.name...)
		dst = append(dst, `"}`...)
	case o.kind == ctConsoleLogin:
		dst = append(dst, `{"type":"IAMUser","principalId":"`...)
		dst = append(dst, pr.principalID...)
		dst = append(dst, `","arn":"`...)
		dst = append(dst, pr.arn...)
		dst = append(dst, `","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","userName":"`...)
		dst = append(dst, pr.name...)
		dst = append(dst, `"}`...)
	case o.viaService:
		dst = g.appendInvokedIdentity(dst, pr, o, invoker)
	default:
		dst = append(dst, pr.identity...)
	}
	dst = append(dst, `,"eventTime":"`...)
	dst = g.tc.appendSeconds(dst, o.t)
	dst = append(dst, `","eventSource":"`...)
	dst = append(dst, src...)
	dst = append(dst, `.amazonaws.com","eventName":"`...)
	dst = append(dst, name...)
	dst = append(dst, `","awsRegion":"`...)
	dst = append(dst, region...)
	dst = append(dst, `","sourceIPAddress":"`...)
	if o.viaService {
		dst = append(dst, invoker...)
		dst = append(dst, `","userAgent":"`...)
		dst = append(dst, invoker...)
		dst = append(dst, '"')
	} else {
		dst = append(dst, o.ip...)
		dst = append(dst, `","userAgent":"`...)
		switch {
		case o.kind == ctConsoleLogin || o.root:
			dst = append(dst, humanUAs[2]...)
		case pr.ua != "":
			dst = append(dst, pr.ua...)
		default:
			dst = append(dst, humanUAs[0]...)
		}
		dst = append(dst, '"')
	}

	// errors
	switch o.fail {
	case failDenied:
		dst = append(dst, `,"errorCode":"AccessDenied","errorMessage":"User: `...)
		if pr.isRole {
			dst = append(dst, `arn:aws:sts::`...)
			dst = append(dst, acc.id...)
			dst = append(dst, `:assumed-role/`...)
			dst = append(dst, pr.name...)
			dst = append(dst, '/')
			dst = append(dst, pr.sessName...)
		} else {
			dst = append(dst, pr.arn...)
		}
		dst = append(dst, ` is not authorized to perform: `...)
		dst = append(dst, src...)
		dst = append(dst, ':')
		dst = append(dst, name...)
		dst = append(dst, ` on resource: `...)
		dst = append(dst, o.res...)
		dst = append(dst, ` because no identity-based policy allows the `...)
		dst = append(dst, src...)
		dst = append(dst, ':')
		dst = append(dst, name...)
		dst = append(dst, ` action"`...)
	case failThrottled:
		dst = append(dst, `,"errorCode":"ThrottlingException","errorMessage":"Rate exceeded"`...)
	case failCredentials:
		dst = append(dst, `,"errorMessage":"Failed authentication"`...)
	case failUnknownUser:
		dst = append(dst, `,"errorMessage":"No username found in supplied account"`...)
	}

	// requestParameters / responseElements
	denied := o.fail == failDenied || o.fail == failThrottled
	switch o.kind {
	case ctGetSecretValue, ctDescribeSecret, ctPutSecretValue:
		dst = append(dst, `,"requestParameters":{"secretId":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `"},"responseElements":null`...)
	case ctListSecrets:
		dst = append(dst, `,"requestParameters":{"maxResults":100,"sortOrder":"asc"},"responseElements":null`...)
	case ctDecryptSSM:
		dst = append(dst, `,"requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"PARAMETER_ARN":"`...)
		dst = append(dst, o.aux...)
		dst = append(dst, `"}},"responseElements":null`...)
	case ctDecrypt:
		dst = append(dst, `,"requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"SecretARN":"`...)
		dst = append(dst, o.aux...)
		dst = append(dst, `","SecretVersionId":"`...)
		dst = appendUpperUUID(dst, r)
		dst = append(dst, `"}},"responseElements":null`...)
	case ctGenerateDataKey:
		dst = append(dst, `,"requestParameters":{"keyId":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `","keySpec":"AES_256"},"responseElements":null`...)
	case ctAssumeRole:
		if denied {
			dst = append(dst, `,"requestParameters":null,"responseElements":null`...)
			break
		}
		sess := pr.name + "-" + string(appendDigits(nil, r, 10))
		dst = append(dst, `,"requestParameters":{"roleArn":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `","roleSessionName":"`...)
		dst = append(dst, sess...)
		dst = append(dst, `","durationSeconds":3600},"responseElements":{"credentials":{"accessKeyId":"ASIA`...)
		dst = r.appendUpper(dst, 16)
		dst = append(dst, `","sessionToken":"IQoJb3JpZ2luX2VjE`...)
		dst = r.appendAlnum(dst, 380)
		dst = append(dst, `","expiration":"`...)
		dst = o.t.Add(3600e9).UTC().AppendFormat(dst, "Jan 2, 2006, 3:04:05 PM")
		dst = append(dst, `"},"assumedRoleUser":{"assumedRoleId":"AROA`...)
		dst = r.appendUpper(dst, 17)
		dst = append(dst, ':')
		dst = append(dst, sess...)
		dst = append(dst, `","arn":"arn:aws:sts::`...)
		roleAcct, roleName := splitRoleARN(o.res)
		dst = append(dst, roleAcct...)
		dst = append(dst, `:assumed-role/`...)
		dst = append(dst, roleName...)
		dst = append(dst, '/')
		dst = append(dst, sess...)
		dst = append(dst, `"}}`...)
	case ctGetCallerIdentity:
		dst = append(dst, `,"requestParameters":null,"responseElements":null`...)
	case ctConsoleLogin:
		if o.fail != failNone {
			dst = append(dst, `,"requestParameters":null,"responseElements":{"ConsoleLogin":"Failure"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_`...)
			dst = r.appendHex(dst, 16)
			dst = append(dst, `","MobileVersion":"No","MFAUsed":"No"}`...)
		} else {
			mfa := "No"
			if o.root || pr.human {
				mfa = "Yes"
			}
			dst = append(dst, `,"requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_`...)
			dst = r.appendHex(dst, 16)
			dst = append(dst, `","MobileVersion":"No","MFAUsed":"`...)
			dst = append(dst, mfa...)
			dst = append(dst, `"}`...)
		}
	case ctStopLogging, ctDeleteTrail:
		dst = append(dst, `,"requestParameters":{"name":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `"},"responseElements":null`...)
	}
	if o.kind != ctConsoleLogin {
		dst = append(dst, `,"requestID":"`...)
		dst = r.appendUUID(dst)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"eventID":"`...)
	if o.id != "" {
		dst = append(dst, o.id...)
	} else {
		dst = r.appendUUID(dst)
	}
	dst = append(dst, `","readOnly":`...)
	if readOnly {
		dst = append(dst, "true"...)
	} else {
		dst = append(dst, "false"...)
	}
	switch {
	case o.kind == ctDecrypt || o.kind == ctDecryptSSM || o.kind == ctGenerateDataKey:
		dst = append(dst, `,"resources":[{"accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","type":"AWS::KMS::Key","ARN":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `"}]`...)
	case o.kind == ctAssumeRole && !denied:
		roleAcct, _ := splitRoleARN(o.res)
		dst = append(dst, `,"resources":[{"accountId":"`...)
		dst = append(dst, roleAcct...)
		dst = append(dst, `","type":"AWS::IAM::Role","ARN":"`...)
		dst = append(dst, o.res...)
		dst = append(dst, `"}]`...)
	}
	if o.kind == ctConsoleLogin {
		dst = append(dst, `,"eventType":"AwsConsoleSignIn"`...)
	} else {
		dst = append(dst, `,"eventType":"AwsApiCall"`...)
	}
	dst = append(dst, `,"managementEvent":true,"recipientAccountId":"`...)
	dst = append(dst, acc.id...)
	dst = append(dst, '"')
	if o.viaService && o.kind == ctDecryptSSM {
		return append(dst, `,"eventCategory":"Management"}`...)
	}
	if o.viaService {
		dst = append(dst, `,"vpcEndpointId":"vpce-0`...)
		dst = append(dst, acc.id[:8]...)
		dst = append(dst, `a1b2c3d4","eventCategory":"Management"}`...)
		return dst
	}
	dst = append(dst, `,"eventCategory":"Management","tlsDetails":`...)
	dst = append(dst, tlsSuites[len(o.ip)&1]...)
	if o.kind == ctConsoleLogin {
		dst = append(dst, `signin.aws.amazon.com"}}`...)
	} else {
		dst = append(dst, src...)
		dst = append(dst, '.')
		dst = append(dst, region...)
		dst = append(dst, `.amazonaws.com"}}`...)
	}
	return dst
}

func appendUpperUUID(dst []byte, r *rng) []byte {
	start := len(dst)
	dst = r.appendUUID(dst)
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c >= 'a' && c <= 'f' {
			dst[i] = c - 32
		}
	}
	return dst
}

func appendDigits(dst []byte, r *rng, n int) []byte {
	v := r.pcg.Uint64()
	for i := 0; i < n; i++ {
		dst = append(dst, byte('0'+v%10))
		v /= 10
	}
	return dst
}

// splitRoleARN returns the account and role name of arn:aws:iam::ACCT:role/NAME.
func splitRoleARN(arn string) (acct, name string) {
	const p = "arn:aws:iam::"
	if len(arn) < len(p)+13 {
		return "", arn
	}
	rest := arn[len(p):]
	acct = rest[:12]
	name = rest[13:]
	if len(name) > 5 && name[:5] == "role/" {
		name = name[5:]
	}
	return acct, name
}

// appendInvokedIdentity renders the userIdentity of a call Secrets Manager
// makes to KMS on the principal's behalf: for an IAM user a forward-access
// session (temporary key, empty sessionIssuer), for a role its session
// without the caller's key.
func (g *Generator) appendInvokedIdentity(dst []byte, pr *principal, o *op, invoker string) []byte {
	acc := pr.acct
	if pr.isRole {
		dst = append(dst, `{"type":"AssumedRole","principalId":"`...)
		dst = append(dst, pr.principalID...)
		dst = append(dst, ':')
		dst = append(dst, pr.sessName...)
		dst = append(dst, `","arn":"arn:aws:sts::`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `:assumed-role/`...)
		dst = append(dst, pr.name...)
		dst = append(dst, '/')
		dst = append(dst, pr.sessName...)
		dst = append(dst, `","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"`...)
		dst = append(dst, pr.principalID...)
		dst = append(dst, `","arn":"`...)
		dst = append(dst, pr.arn...)
		dst = append(dst, `","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","userName":"`...)
		dst = append(dst, pr.name...)
		dst = append(dst, `"},"webIdFederationData":{},"attributes":{"creationDate":"`...)
		dst = g.tc.appendSeconds(dst, pr.sessStart)
		dst = append(dst, `","mfaAuthenticated":"false"}},"invokedBy":"`...)
		dst = append(dst, invoker...)
		return append(dst, `"}`...)
	}
	dst = append(dst, `{"type":"IAMUser","principalId":"`...)
	dst = append(dst, pr.principalID...)
	dst = append(dst, `","arn":"`...)
	dst = append(dst, pr.arn...)
	dst = append(dst, `","accountId":"`...)
	dst = append(dst, acc.id...)
	dst = append(dst, `","accessKeyId":"ASIA`...)
	dst = g.r.appendUpper(dst, 16)
	dst = append(dst, `","userName":"`...)
	dst = append(dst, pr.arn[len("arn:aws:iam::")+13+len("user/"):]...)
	dst = append(dst, `","sessionContext":{"sessionIssuer":{},"webIdFederationData":{},"attributes":{"creationDate":"`...)
	dst = g.tc.appendSeconds(dst, o.t.Add(-2*time.Second))
	dst = append(dst, `","mfaAuthenticated":"false"}},"invokedBy":"`...)
	dst = append(dst, invoker...)
	return append(dst, `"}`...)
}
