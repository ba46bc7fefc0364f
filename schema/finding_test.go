package schema

import "testing"

func TestMakeIDDeterministicAndUnambiguous(t *testing.T) {
	a := MakeID(DetectorUnexpectedIP, "ab", "c")
	if a != MakeID(DetectorUnexpectedIP, "ab", "c") {
		t.Fatal("same evidence gave different ids")
	}
	if a == MakeID(DetectorUnexpectedIP, "a", "bc") {
		t.Fatal("length prefixing failed: different evidence gave one id")
	}
	if a == MakeID(DetectorFirstTimeAccess, "ab", "c") {
		t.Fatal("detector name not part of id")
	}
	if len(a) != 32 {
		t.Fatalf("id length = %d, want 32", len(a))
	}
}

func TestSeverityOrder(t *testing.T) {
	order := []Severity{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}
	for i := 1; i < len(order); i++ {
		if order[i-1].Rank() >= order[i].Rank() {
			t.Fatalf("%s should rank below %s", order[i-1], order[i])
		}
	}
	if _, err := ParseSeverity("urgent"); err == nil {
		t.Fatal("ParseSeverity accepted an unknown severity")
	}
}
