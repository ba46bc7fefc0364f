package gen

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

type source uint8

const (
	srcCloudTrail source = iota
	srcVault
)

func (s source) String() string {
	if s == srcVault {
		return "vault"
	}
	return "cloudtrail"
}

// opKind is one kind of client request the generator can render.
type opKind uint8

const (
	// CloudTrail
	ctGetSecretValue opKind = iota
	ctDescribeSecret
	ctListSecrets
	ctDecrypt    // KMS Decrypt invoked by Secrets Manager on the caller's behalf
	ctDecryptSSM // KMS Decrypt of an SSM SecureString parameter ("AWS Internal")
	ctGenerateDataKey
	ctAssumeRole
	ctGetCallerIdentity
	ctConsoleLogin
	ctStopLogging
	ctDeleteTrail
	ctPutSecretValue // a secret's new value (a rollout)
	// Vault
	vLoginAppRole
	vLoginUserpass
	vRead
	vList
	vRenewSelf
	vLookupSelf
	vAuditDisable
	vWrite // KV write of a secret (a rollout)
)

// failKind says how (and whether) a request fails.
type failKind uint8

const (
	failNone         failKind = iota
	failCredentials           // wrong password (existing user) / ConsoleLogin failure
	failUnknownUser           // login of a user that does not exist
	failDenied                // authenticated, refused by policy (AccessDenied)
	failInvalidToken          // Vault: unknown token
	failThrottled             // CloudTrail ThrottlingException
)

type account struct {
	id     string
	name   string
	region string
	// smKeyARN is the AWS-managed key aws/secretsmanager of the account.
	smKeyARN string
	// ssmKeyARN is the AWS-managed key aws/ssm of the account.
	ssmKeyARN string
	secrets   []ctSecret
	teamKeys  map[string]string // team -> customer managed key ARN
	trail     string
}

type ctSecret struct {
	name string
	arn  string
	team string
}

type vaultSecret struct {
	path string // secret/data/<team>/<item>
	team string
}

// routineItem is one thing a principal does as part of its normal routine.
type routineItem struct {
	kind   opKind
	res    string // what the log writes as the resource (secret id, key ARN, role ARN, Vault path)
	extra  string // secondary resource (e.g. the secret ARN behind a KMS Decrypt)
	weight float64
}

type principal struct {
	idx    int
	src    source
	human  bool
	name   string
	team   string
	weight float64
	ips    []string
	ua     string

	routine []routineItem
	cum     []float64 // cumulative routine weights

	// CloudTrail
	acct        *account
	isRole      bool
	arn         string // the principal as schema.Event.Principal: user or role ARN
	principalID string
	accessKey   string
	sessName    string
	sessKey     string
	sessStart   time.Time
	identity    []byte // pre-rendered userIdentity object (rebuilt per role session)

	// Vault
	entityID    string
	displayName string
	login       string // role name (approle) or user name (userpass)
	policies    string // JSON array
	granting    string // granting policy name
	metadata    string // JSON object
	token       string
	accessor    string
	tokenIssue  time.Time
	tokenTTL    int
	roleIDHMAC  string
	secretHMAC  string
	passwdHMAC  string

	lastFail time.Time
}

// population is the fixed set of principals, accounts and secrets.
type population struct {
	accounts     []*account
	ct           []*principal // AWS principals
	vault        []*principal // Vault principals
	all          []*principal
	cum          []float64 // cumulative principal weights over all
	vaultSecrets []vaultSecret
	vaultMounts  vaultMounts
	usedIPs      map[string]bool
}

type vaultMounts struct {
	approle, userpass, token, kv, system string // mount accessors
}

var teams = []string{"payments", "billing", "ci", "web", "reporting", "notifications", "identity", "search", "data", "ml", "infra", "security"}

var items = []string{"db-password", "api-key", "oauth-client", "signing-key", "tls-key", "smtp", "redis", "kafka-sasl",
	"warehouse-db", "s3-export", "github-token", "docker-registry", "npm-token", "hsm-pin", "session-secret", "webhook-secret",
	"stripe-api-key", "twilio", "pagerduty-key", "ssh-ca-key", "vpn-psk", "ldap-bind", "datadog-api-key", "sentry-dsn"}

var machineKinds = []string{"api", "worker", "cron", "etl", "svc", "runner", "sync", "gateway"}

var humanNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
	"niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda", "zoe", "quentin", "uma", "xavier"}

var machineUAs = []string{
	"aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/secretsmanager#1.32.3",
	"Boto3/1.34.144 md/Botocore#1.34.144 ua/2.0 os/linux#5.10.219-208.866.amzn2.x86_64 md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.144",
	"aws-sdk-java/2.25.60 Linux/5.10.219-208.866.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS Java/17.0.11 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
	"aws-sdk-nodejs/2.1659.0 linux/v20.15.1 exec-env/AWS_ECS_FARGATE callback",
}

var humanUAs = []string{
	"aws-cli/2.17.13 md/awscrt#0.20.11 ua/2.0 os/macos#23.5.0 md/arch#arm64 lang/python#3.11.9 md/pyimpl#CPython cmd/secretsmanager.get-secret-value",
	"aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-41-generic exe/x86_64.ubuntu.22 prompt/off command/secretsmanager.describe-secret",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
}

func hmacOf(r *rng) string {
	return string(r.appendHex([]byte("hmac-sha256:"), 64))
}

func newPopulation(cfg Config, r *rng) *population {
	p := &population{usedIPs: map[string]bool{}}
	nCT := int(float64(cfg.Machines)*cfg.CloudTrailShare + 0.5)
	hCT := int(float64(cfg.Humans)*cfg.CloudTrailShare + 0.5)
	if cfg.CloudTrailShare > 0 && nCT+hCT == 0 {
		nCT = 1
	}
	if cfg.CloudTrailShare < 1 && nCT+hCT == cfg.Machines+cfg.Humans {
		if nCT > 0 {
			nCT--
		} else {
			hCT--
		}
	}
	if nCT+hCT > 0 {
		names := []string{"prod", "staging", "shared", "data", "sandbox"}
		regions := []string{"us-east-1", "us-east-1", "eu-west-1", "us-west-2"}
		for a := 0; a < cfg.Accounts; a++ {
			acc := &account{
				id:       fmt.Sprintf("%012d", 100000000000+r.intn(899999999999)),
				name:     names[a%len(names)] + suffixN(a/len(names)),
				region:   regions[a%len(regions)],
				teamKeys: map[string]string{},
			}
			acc.smKeyARN = "arn:aws:kms:" + acc.region + ":" + acc.id + ":key/" + string(r.appendUUID(nil))
			acc.ssmKeyARN = "arn:aws:kms:" + acc.region + ":" + acc.id + ":key/" + string(r.appendUUID(nil))
			for _, t := range teams {
				acc.teamKeys[t] = "arn:aws:kms:" + acc.region + ":" + acc.id + ":key/" + string(r.appendUUID(nil))
			}
			acc.trail = "arn:aws:cloudtrail:" + acc.region + ":" + acc.id + ":trail/org-audit-trail"
			for i := 0; i < cfg.SecretsPerAccount; i++ {
				team := teams[i%len(teams)]
				item := items[(i/len(teams))%len(items)]
				name := acc.name + "/" + team + "/" + item + suffixN(i/(len(teams)*len(items)))
				arn := "arn:aws:secretsmanager:" + acc.region + ":" + acc.id + ":secret:" + name + "-" + string(r.appendAlnum(nil, 6))
				acc.secrets = append(acc.secrets, ctSecret{name: name, arn: arn, team: team})
			}
			p.accounts = append(p.accounts, acc)
		}
	}
	for i := 0; i < cfg.VaultSecrets; i++ {
		team := teams[i%len(teams)]
		item := items[(i/len(teams))%len(items)]
		p.vaultSecrets = append(p.vaultSecrets, vaultSecret{path: "secret/data/" + team + "/" + item + suffixN(i/(len(teams)*len(items))), team: team})
	}
	p.vaultMounts = vaultMounts{
		approle:  "auth_approle_" + string(r.appendHex(nil, 8)),
		userpass: "auth_userpass_" + string(r.appendHex(nil, 8)),
		token:    "auth_token_" + string(r.appendHex(nil, 8)),
		kv:       "kv_" + string(r.appendHex(nil, 8)),
		system:   "system_" + string(r.appendHex(nil, 8)),
	}

	mi, hi := 0, 0
	for i := 0; i < nCT; i++ {
		p.ct = append(p.ct, p.newCTPrincipal(r, false, mi))
		mi++
	}
	for i := 0; i < hCT; i++ {
		p.ct = append(p.ct, p.newCTPrincipal(r, true, hi))
		hi++
	}
	for i := 0; i < cfg.Machines-nCT; i++ {
		p.vault = append(p.vault, p.newVaultPrincipal(r, false, mi))
		mi++
	}
	for i := 0; i < cfg.Humans-hCT; i++ {
		p.vault = append(p.vault, p.newVaultPrincipal(r, true, hi))
		hi++
	}
	p.all = append(append([]*principal{}, p.ct...), p.vault...)
	total := 0.0
	for i, pr := range p.all {
		pr.idx = i
		total += pr.weight
		p.cum = append(p.cum, total)
		rt := 0.0
		for _, it := range pr.routine {
			rt += it.weight
			pr.cum = append(pr.cum, rt)
		}
		for _, ip := range pr.ips {
			p.usedIPs[ip] = true
		}
	}
	return p
}

func suffixN(n int) string {
	if n == 0 {
		return ""
	}
	return "-" + strconv.Itoa(n+1)
}

// machineIPs gives machine n one or two private addresses, some with an IPv6 one.
func machineIPs(r *rng, n int, v6prefix string) []string {
	a, b := 10+n/57600%100, n/240%240
	ips := []string{fmt.Sprintf("10.%d.%d.%d", a, b, 10+n%240)}
	if r.intn(3) == 0 {
		ips = append(ips, fmt.Sprintf("10.%d.%d.%d", a, b, 10+(n+120)%240))
	}
	if r.intn(5) == 0 {
		ips = append(ips, fmt.Sprintf("%s:%x::%x", v6prefix, n/65536+1, n%65536+1))
	}
	return ips
}

// humanIPs gives human n an office/home address in 198.18.0.0/15 and, for
// some, a VPN address or an IPv6 address.
func humanIPs(r *rng, n int) []string {
	ips := []string{fmt.Sprintf("198.%d.%d.%d", 18+n/(200*256)%2, n/200%256, 20+n%200)}
	switch r.intn(3) {
	case 0:
		ips = append(ips, fmt.Sprintf("100.%d.%d.%d", 64+n/(200*256)%64, n/200%256, 20+n%200))
	case 1:
		ips = append(ips, fmt.Sprintf("2001:db8:%x:%x::%x", 0x1000+n/65536, n%65536, 0xb0+r.intn(0xff00)))
	}
	return ips
}

func pickDistinct[T any](r *rng, from []T, n int, ok func(T) bool) []T {
	idx := make([]int, 0, len(from))
	for i := range from {
		if ok == nil || ok(from[i]) {
			idx = append(idx, i)
		}
	}
	for i := len(idx) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		idx[i], idx[j] = idx[j], idx[i]
	}
	if n > len(idx) {
		n = len(idx)
	}
	idx = idx[:n]
	sort.Ints(idx)
	out := make([]T, n)
	for i, k := range idx {
		out[i] = from[k]
	}
	return out
}

func (p *population) newCTPrincipal(r *rng, human bool, n int) *principal {
	acc := p.accounts[n%len(p.accounts)]
	team := teams[r.intn(len(teams))]
	pr := &principal{src: srcCloudTrail, human: human, acct: acc, team: team}
	if human {
		pr.name = humanNames[n%len(humanNames)] + suffixN(n/len(humanNames))
		pr.weight = 0.3 + 0.7*r.float()
		pr.ips = humanIPs(r, n)
		pr.ua = humanUAs[r.intn(len(humanUAs))]
		pr.arn = "arn:aws:iam::" + acc.id + ":user/" + pr.name
		pr.principalID = "AIDA" + string(r.appendUpper(nil, 17))
		pr.accessKey = "AKIA" + string(r.appendUpper(nil, 16))
		secrets := pickDistinct(r, acc.secrets, 3+r.intn(3), nil)
		pr.routine = append(pr.routine, routineItem{kind: ctConsoleLogin, weight: 1}, routineItem{kind: ctListSecrets, weight: 1.5}, routineItem{kind: ctGetCallerIdentity, weight: 0.5})
		for _, s := range secrets {
			pr.routine = append(pr.routine,
				routineItem{kind: ctDescribeSecret, res: s.arn, weight: 1},
				routineItem{kind: ctGetSecretValue, res: s.arn, weight: 1},
				routineItem{kind: ctDecrypt, res: acc.smKeyARN, extra: s.arn, weight: 1})
		}
		pr.identity = pr.userIdentity(nil)
	} else {
		kind := machineKinds[r.intn(len(machineKinds))]
		pr.name = team + "-" + kind + suffixN(n/len(teams))
		pr.isRole = r.intn(5) != 0
		pr.weight = 2 + 8*r.float()
		pr.ips = machineIPs(r, n, "2600:1f18:4a2")
		pr.ua = machineUAs[r.intn(len(machineUAs))]
		if pr.isRole {
			pr.arn = "arn:aws:iam::" + acc.id + ":role/" + pr.name
			pr.principalID = "AROA" + string(r.appendUpper(nil, 17))
		} else {
			pr.arn = "arn:aws:iam::" + acc.id + ":user/svc-" + pr.name
			pr.principalID = "AIDA" + string(r.appendUpper(nil, 17))
			pr.accessKey = "AKIA" + string(r.appendUpper(nil, 16))
		}
		secrets := pickDistinct(r, acc.secrets, 2+r.intn(3), func(s ctSecret) bool { return s.team == team })
		for i, s := range secrets {
			id := s.arn
			if i%2 == 1 && r.intn(2) == 0 {
				id = s.name // some applications name the secret, not its ARN
			}
			pr.routine = append(pr.routine,
				routineItem{kind: ctGetSecretValue, res: id, weight: 6},
				routineItem{kind: ctDecrypt, res: acc.smKeyARN, extra: s.arn, weight: 4})
		}
		pr.routine = append(pr.routine,
			routineItem{kind: ctDescribeSecret, res: secrets[0].arn, weight: 0.5},
			routineItem{kind: ctGenerateDataKey, res: acc.teamKeys[team], weight: 1.5},
			routineItem{kind: ctGetCallerIdentity, weight: 0.5})
		if r.intn(3) == 0 {
			param := "arn:aws:ssm:" + acc.region + ":" + acc.id + ":parameter/" + team + "/" + pr.name + "/config"
			pr.routine = append(pr.routine, routineItem{kind: ctDecryptSSM, res: acc.ssmKeyARN, extra: param, weight: 1})
		}
		if r.intn(3) == 0 {
			target := p.accounts[r.intn(len(p.accounts))]
			pr.routine = append(pr.routine, routineItem{kind: ctAssumeRole, res: "arn:aws:iam::" + target.id + ":role/" + team + "-deploy", weight: 0.5})
		}
		if !pr.isRole {
			pr.identity = pr.userIdentity(nil)
		}
	}
	pr.login = pr.name
	return pr
}

func (p *population) newVaultPrincipal(r *rng, human bool, n int) *principal {
	team := teams[r.intn(len(teams))]
	pr := &principal{src: srcVault, human: human, team: team}
	pr.entityID = string(r.appendVaultID(nil))
	if human {
		pr.login = humanNames[n%len(humanNames)] + suffixN(n/len(humanNames))
		pr.name = pr.login
		pr.displayName = "userpass-" + pr.login
		pr.weight = 0.3 + 0.7*r.float()
		pr.ips = humanIPs(r, n+1000)
		role := []string{"platform-admin", "developer", "sre", "auditor"}[r.intn(4)]
		pr.policies = `["default","` + role + `"]`
		pr.granting = role
		pr.metadata = `{"username":"` + pr.login + `"}`
		pr.tokenTTL = 28800
		pr.passwdHMAC = hmacOf(r)
		secrets := pickDistinct(r, p.vaultSecrets, 3+r.intn(3), nil)
		pr.routine = append(pr.routine, routineItem{kind: vLoginUserpass, weight: 1}, routineItem{kind: vLookupSelf, weight: 0.7},
			routineItem{kind: vList, res: "secret/metadata/", weight: 0.7})
		for _, s := range secrets {
			pr.routine = append(pr.routine, routineItem{kind: vRead, res: s.path, weight: 1})
		}
	} else {
		kind := machineKinds[r.intn(len(machineKinds))]
		pr.login = team + "-" + kind + suffixN(n/len(teams))
		pr.name = pr.login
		pr.displayName = "approle"
		pr.weight = 2 + 8*r.float()
		pr.ips = machineIPs(r, n, "fd00:20")
		pr.policies = `["default","` + pr.login + `"]`
		pr.granting = pr.login
		pr.metadata = `{"role_name":"` + pr.login + `","team":"` + team + `"}`
		pr.tokenTTL = 3600
		pr.roleIDHMAC = hmacOf(r)
		pr.secretHMAC = hmacOf(r)
		secrets := pickDistinct(r, p.vaultSecrets, 2+r.intn(3), func(s vaultSecret) bool { return s.team == team })
		pr.routine = append(pr.routine, routineItem{kind: vLoginAppRole, weight: 2}, routineItem{kind: vRenewSelf, weight: 1},
			routineItem{kind: vLookupSelf, weight: 0.3}, routineItem{kind: vList, res: "secret/metadata/" + team + "/", weight: 0.5})
		for _, s := range secrets {
			pr.routine = append(pr.routine, routineItem{kind: vRead, res: s.path, weight: 5})
		}
		// Dynamic credentials: every other machine reads its team's
		// database credentials, some also AWS credentials.
		if n%2 == 0 {
			pr.routine = append(pr.routine, routineItem{kind: vRead, res: "database/creds/" + team + "-ro", weight: 2})
		}
		if n%3 == 0 {
			pr.routine = append(pr.routine, routineItem{kind: vRead, res: "aws/creds/" + team + "-deploy", weight: 1})
		}
		// List-heavy clients (a sync or inventory job): every fifth machine
		// lists every team's folder.
		if n%5 == 0 {
			for _, t := range teams {
				pr.routine = append(pr.routine, routineItem{kind: vList, res: "secret/metadata/" + t + "/", weight: 0.6})
			}
		}
	}
	pr.token, pr.accessor = hmacOf(r), hmacOf(r)
	return pr
}

// userIdentity renders the CloudTrail userIdentity object of an IAM user
// or of the principal's current role session.
func (pr *principal) userIdentity(dst []byte) []byte {
	acc := pr.acct
	if !pr.isRole {
		dst = append(dst, `{"type":"IAMUser","principalId":"`...)
		dst = append(dst, pr.principalID...)
		dst = append(dst, `","arn":"`...)
		dst = append(dst, pr.arn...)
		dst = append(dst, `","accountId":"`...)
		dst = append(dst, acc.id...)
		dst = append(dst, `","accessKeyId":"`...)
		dst = append(dst, pr.accessKey...)
		dst = append(dst, `","userName":"`...)
		dst = append(dst, pr.arn[len("arn:aws:iam::")+13+len("user/"):]...)
		return append(dst, `"}`...)
	}
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
	dst = append(dst, `","accessKeyId":"`...)
	dst = append(dst, pr.sessKey...)
	dst = append(dst, `","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"`...)
	dst = append(dst, pr.principalID...)
	dst = append(dst, `","arn":"`...)
	dst = append(dst, pr.arn...)
	dst = append(dst, `","accountId":"`...)
	dst = append(dst, acc.id...)
	dst = append(dst, `","userName":"`...)
	dst = append(dst, pr.name...)
	dst = append(dst, `"},"webIdFederationData":{},"attributes":{"creationDate":"`...)
	dst = pr.sessStart.UTC().AppendFormat(dst, "2006-01-02T15:04:05Z")
	dst = append(dst, `","mfaAuthenticated":"false"},"ec2RoleDelivery":"2.0"}}`...)
	return dst
}

// ensureSession rotates an assumed-role principal's session every hour of
// event time (new session name and temporary key).
func (pr *principal) ensureSession(r *rng, t time.Time) {
	if !pr.isRole || (!pr.sessStart.IsZero() && t.Sub(pr.sessStart) < time.Hour) {
		return
	}
	pr.sessStart = t.Truncate(time.Second)
	pr.sessName = "i-0" + string(r.appendHex(nil, 16))
	pr.sessKey = "ASIA" + string(r.appendUpper(nil, 16))
	pr.identity = pr.userIdentity(pr.identity[:0])
}

// pick returns a routine item chosen by weight.
func (pr *principal) pick(r *rng) *routineItem {
	x := r.float() * pr.cum[len(pr.cum)-1]
	i := sort.SearchFloat64s(pr.cum, x)
	if i >= len(pr.routine) {
		i = len(pr.routine) - 1
	}
	return &pr.routine[i]
}
