package measure

import "testing"

func TestParseLoadAverage(t *testing.T) {
	if got := parseLoadAverage("1.11 1.87 2.80 3/812 12345\n"); got != [3]float64{1.11, 1.87, 2.80} {
		t.Errorf("parseLoadAverage = %v, want [1.11 1.87 2.8]", got)
	}
	if got := parseLoadAverage("1.0 x 2.0"); got != [3]float64{} {
		t.Errorf("parseLoadAverage of a bad field = %v, want zeros", got)
	}
}
