package alert

import (
	"testing"

	"auditwatch/alert/ledger"
	"auditwatch/alert/slack"
)

// The ledger is the Slack output's journal: both name an attempt record
// without a place alike.
func TestLedgerIsSlackJournal(t *testing.T) {
	var _ slack.Journal = (*ledger.Threads)(nil)
	if ledger.UnknownPlace != slack.UnknownPlace {
		t.Fatalf("ledger.UnknownPlace %q, slack.UnknownPlace %q", ledger.UnknownPlace, slack.UnknownPlace)
	}
}
