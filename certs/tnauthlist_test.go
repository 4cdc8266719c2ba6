package certs

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realSPCOnly is the TNAuthList extension value of a production STI
// certificate (SPC 996H, issued under the STI-PA): explicit [0] around an
// IA5String.
const realSPCOnly = "30 08 a0 06 16 04 39 39 36 48"

func TestTNAuthListKnownEncodings(t *testing.T) {
	tests := []struct {
		name string
		list TNAuthList
		want string // hex
	}{
		{"real STI cert SPC 996H", TNAuthList{SPCs: []string{"996H"}}, realSPCOnly},
		// openssl asn1parse -genconf with field1=EXP:0,IA5:818H, as STI-PA ACME docs show: MAigBhYEODE4SA==
		{"openssl EXP:0 818H", TNAuthList{SPCs: []string{"818H"}}, "30 08 a0 06 16 04 38 31 38 48"},
		{"one TN", TNAuthList{TNs: []string{"12025550100"}}, "30 0f a2 0d 16 0b 3132303235353530313030"},
		{"range", TNAuthList{Ranges: []TNRange{{Start: "12025550100", Count: 100}}},
			"30 14 a1 12 30 10 16 0b 3132303235353530313030 02 01 64"},
		{"range count 128 needs a leading zero", TNAuthList{Ranges: []TNRange{{Start: "1", Count: 128}}},
			"30 0b a1 09 30 07 16 01 31 02 02 00 80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.list.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("Encode = % x\nwant     % x", got, want)
			}
			back, err := ParseTNAuthList(got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.list) {
				t.Fatalf("round trip = %+v, want %+v", back, tt.list)
			}
		})
	}
	b64, _ := base64.StdEncoding.DecodeString("MAigBhYEODE4SA==")
	if _, err := ParseTNAuthList(b64); err != nil {
		t.Fatalf("STI-PA documented example: %v", err)
	}
}

// TestTNAuthListMatchesEncodingASN1 cross-checks our encoder against
// encoding/asn1 with explicit tags, the RFC 8226 module's tagging.
func TestTNAuthListMatchesEncodingASN1(t *testing.T) {
	type rng struct {
		Start string `asn1:"ia5"`
		Count int
	}
	spc, _ := asn1.MarshalWithParams("TEST01", "explicit,tag:0,ia5")
	r, _ := asn1.MarshalWithParams(rng{"1202555", 10}, "explicit,tag:1")
	one, _ := asn1.MarshalWithParams("12025550100", "explicit,tag:2,ia5")
	want, err := asn1.Marshal([]asn1.RawValue{{FullBytes: spc}, {FullBytes: r}, {FullBytes: one}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := TNAuthList{SPCs: []string{"TEST01"}, Ranges: []TNRange{{"1202555", 10}}, TNs: []string{"12025550100"}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("ours    % x\nasn1    % x", got, want)
	}
}

func TestTNAuthListRoundTrip(t *testing.T) {
	tests := []TNAuthList{
		{SPCs: []string{"TEST01"}},
		{SPCs: []string{"A", "B", "C"}},
		{TNs: []string{"1", "123456789012345", "*67#"}},
		{Ranges: []TNRange{{"0", 2}, {"999", 1 << 40}}},
		{SPCs: []string{"616H"}, Ranges: []TNRange{{"12025550000", 10000}}, TNs: []string{"12025551234"}},
		{SPCs: []string{strings.Repeat("X", 300)}}, // long form length
	}
	for _, l := range tests {
		der, err := l.Encode()
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		got, err := ParseTNAuthList(der)
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		if !reflect.DeepEqual(got, l) {
			t.Fatalf("round trip = %+v, want %+v", got, l)
		}
	}
}

func TestTNAuthListEncodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		list TNAuthList
		want error
	}{
		{"empty", TNAuthList{}, ErrEmptyTNAuth},
		{"empty SPC", TNAuthList{SPCs: []string{""}}, ErrBadSPC},
		{"SPC with space", TNAuthList{SPCs: []string{"AB CD"}}, ErrBadSPC},
		{"SPC with control", TNAuthList{SPCs: []string{"AB\x00"}}, ErrBadSPC},
		{"SPC non-ASCII", TNAuthList{SPCs: []string{"é"}}, ErrBadSPC},
		{"TN with +", TNAuthList{TNs: []string{"+12025550100"}}, ErrBadTN},
		{"TN with letter", TNAuthList{TNs: []string{"1202555O100"}}, ErrBadTN},
		{"TN empty", TNAuthList{TNs: []string{""}}, ErrBadTN},
		{"TN 16 digits", TNAuthList{TNs: []string{"1234567890123456"}}, ErrBadTN},
		{"range count 1", TNAuthList{Ranges: []TNRange{{"1202", 1}}}, ErrBadRange},
		{"range count 0", TNAuthList{Ranges: []TNRange{{"1202", 0}}}, ErrBadRange},
		{"range count negative", TNAuthList{Ranges: []TNRange{{"1202", -5}}}, ErrBadRange},
		{"range bad start", TNAuthList{Ranges: []TNRange{{"12-02", 10}}}, ErrBadTN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.list.Encode()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Encode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseTNAuthListRefuses(t *testing.T) {
	tests := []struct {
		name string
		der  string
	}{
		{"nil", ""},
		{"one byte", "30"},
		{"empty sequence", "30 00"},
		{"trailing data", realSPCOnly + " 00"},
		{"trailing second list", realSPCOnly + " " + realSPCOnly},
		{"SET not SEQUENCE", "31 08 a0 06 16 04 39 39 36 48"},
		{"primitive outer", "10 08 a0 06 16 04 39 39 36 48"},
		{"implicit spc [0]", "30 06 80 04 39 39 36 48"},
		{"implicit one [2]", "30 03 82 01 31"},
		{"implicit range [1]", "30 08 a1 06 16 01 31 02 01 05"},
		{"unknown tag [3]", "30 08 a3 06 16 04 39 39 36 48"},
		{"bare IA5String entry", "30 06 16 04 39 39 36 48"},
		{"spc as UTF8String", "30 08 a0 06 0c 04 39 39 36 48"},
		{"spc as PrintableString", "30 08 a0 06 13 04 39 39 36 48"},
		{"spc constructed IA5", "30 08 a0 06 36 04 39 39 36 48"},
		{"spc empty", "30 04 a0 02 16 00"},
		{"spc space", "30 05 a0 03 16 01 20"},
		{"spc non-ASCII", "30 05 a0 03 16 01 e9"},
		{"spc extra after IA5", "30 0a a0 08 16 04 39 39 36 48 05 00"},
		{"spc empty explicit", "30 02 a0 00"},
		{"one bad char", "30 05 a2 03 16 01 41"},
		{"one plus", "30 06 a2 04 16 02 2b 31"},
		{"one 16 chars", "30 14 a2 12 16 10 31323334353637383930313233343536"},
		{"one empty", "30 04 a2 02 16 00"},
		{"range count 1", "30 0a a1 08 30 06 16 01 31 02 01 01"},
		{"range count 0", "30 0a a1 08 30 06 16 01 31 02 01 00"},
		{"range count negative", "30 0a a1 08 30 06 16 01 31 02 01 ff"},
		{"range count non-minimal", "30 0b a1 09 30 07 16 01 31 02 02 00 05"},
		{"range count empty", "30 09 a1 07 30 05 16 01 31 02 00"},
		{"range count huge", "30 13 a1 11 30 0f 16 01 31 02 0a 01 00 00 00 00 00 00 00 00 00"},
		{"range missing count", "30 07 a1 05 30 03 16 01 31"},
		{"range count as OCTET STRING", "30 0a a1 08 30 06 16 01 31 04 01 05"},
		{"range start bad char", "30 0a a1 08 30 06 16 01 41 02 01 05"},
		{"range not a SEQUENCE", "30 08 a1 06 16 01 31 02 01 05"},
		{"range trailing after SEQUENCE", "30 0c a1 0a 30 06 16 01 31 02 01 05 05 00"},
		{"range broken extension", "30 0c a1 0a 30 08 16 01 31 02 01 05 05 05"},
		{"indefinite length", "30 80 a0 06 16 04 39 39 36 48 00 00"},
		{"non-minimal long length", "30 81 08 a0 06 16 04 39 39 36 48"},
		{"length leading zero", "30 82 00 08 a0 06 16 04 39 39 36 48"},
		{"length 5 octets", "30 85 00 00 00 00 08"},
		{"length beyond input", "30 09 a0 06 16 04 39 39 36 48"},
		{"inner length beyond", "30 08 a0 06 16 05 39 39 36 48"},
		{"truncated long length", "30 82 01"},
		{"high tag number", "30 09 bf 1f 05 16 03 31 32 33"},
		{"high tag outer", "1f 30 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseTNAuthList(mustHex(t, tt.der))
			if err == nil {
				t.Fatalf("ParseTNAuthList(%s) = %+v, want error", tt.der, l)
			}
			if !errors.Is(err, ErrBadTNAuthList) {
				t.Fatalf("error %v does not wrap ErrBadTNAuthList", err)
			}
			if !l.Empty() {
				t.Fatalf("partial result on error: %+v", l)
			}
		})
	}
}

func TestParseTNAuthListErrorKinds(t *testing.T) {
	if _, err := ParseTNAuthList(mustHex(t, "30 00")); !errors.Is(err, ErrEmptyTNAuth) {
		t.Errorf("empty: %v", err)
	}
	if _, err := ParseTNAuthList(mustHex(t, "30 05 a2 03 16 01 41")); !errors.Is(err, ErrBadTN) {
		t.Errorf("bad TN: %v", err)
	}
	if _, err := ParseTNAuthList(mustHex(t, "30 0a a1 08 30 06 16 01 31 02 01 01")); !errors.Is(err, ErrBadRange) {
		t.Errorf("bad range: %v", err)
	}
	_, err := ParseTNAuthList(mustHex(t, "30 06 80 04 39 39 36 48"))
	if err == nil || !strings.Contains(err.Error(), "EXPLICIT") {
		t.Errorf("implicit tag error should say why: %v", err)
	}
}

// TestParseTNAuthListRangeExtensionAddition: TelephoneNumberRange has an
// extension marker, so a later version's extra component is skipped.
func TestParseTNAuthListRangeExtensionAddition(t *testing.T) {
	l, err := ParseTNAuthList(mustHex(t, "30 0c a1 0a 30 08 16 01 31 02 01 05 05 00"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (TNAuthList{Ranges: []TNRange{{"1", 5}}}); !reflect.DeepEqual(l, want) {
		t.Fatalf("got %+v, want %+v", l, want)
	}
}

func TestTNAuthListCovers(t *testing.T) {
	list := TNAuthList{
		SPCs:   []string{"TEST01"},
		Ranges: []TNRange{{"12025550100", 100}, {"4420", 10}, {"99#0", 5}},
		TNs:    []string{"13105550000", "*67"},
	}
	tests := []struct {
		list TNAuthList
		tn   string
		want bool
	}{
		{TNAuthList{SPCs: []string{"TEST01"}}, "12025550100", true},
		{TNAuthList{SPCs: []string{"TEST01"}}, "anything", true},
		{list, "13105550000", true},
		{list, "+13105550000", true},
		{list, "13105550001", false},
		{list, "*67", true},
		{list, "12025550100", true}, // range start
		{list, "12025550199", true}, // range end
		{list, "+12025550150", true},
		{list, "12025550200", false}, // one past the end
		{list, "12025550099", false}, // one before the start
		{list, "1202555010", false},  // shorter
		{list, "120255501000", false},
		{list, "4429", true},
		{list, "4430", false},
		{list, "99#1", false}, // non-numeric range start covers nothing
		{list, "", false},
		{list, "+", false},
		{list, "1202555abcd", false},
		{TNAuthList{Ranges: []TNRange{{"999999999999990", 1 << 62}}}, "999999999999999", true}, // no overflow
		{TNAuthList{Ranges: []TNRange{{"9", 5}}}, "10", false},                                 // same length only
		{TNAuthList{TNs: []string{"1"}}, "2", false},
	}
	for _, tt := range tests {
		if got := tt.list.Covers(tt.tn); got != tt.want {
			t.Errorf("%v Covers(%q) = %v, want %v", tt.list, tt.tn, got, tt.want)
		}
	}
}

func TestAppendTNSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    TNAuthList
		wantErr bool
	}{
		{"12025550100", TNAuthList{TNs: []string{"12025550100"}}, false},
		{"+12025550100", TNAuthList{TNs: []string{"12025550100"}}, false},
		{"1202555xxxx", TNAuthList{Ranges: []TNRange{{"12025550000", 10000}}}, false},
		{"1202555010X", TNAuthList{Ranges: []TNRange{{"12025550100", 10}}}, false},
		{"12025550100-12025550199", TNAuthList{Ranges: []TNRange{{"12025550100", 100}}}, false},
		{"12025550100-12025550100", TNAuthList{}, true}, // count 1
		{"12025550199-12025550100", TNAuthList{}, true},
		{"1202-120255", TNAuthList{}, true},
		{"abc", TNAuthList{}, true},
		{"", TNAuthList{}, true},
		{"xxxx", TNAuthList{}, true},        // a prefix needs digits
		{"1xxxxxxxxxx", TNAuthList{}, true}, // too many x's
		{"12a4xx", TNAuthList{}, true},
		{"1234567890123456", TNAuthList{}, true},
	}
	for _, tt := range tests {
		got, err := AppendTNSpec(TNAuthList{}, tt.spec)
		if (err != nil) != tt.wantErr {
			t.Errorf("AppendTNSpec(%q) error = %v, wantErr %v", tt.spec, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("AppendTNSpec(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

func TestTNAuthListOf(t *testing.T) {
	dir := t.TempDir()
	if err := InitPKI(InitOptions{Dir: dir, SPC: "616H", TNs: []string{"12025550100", "1310555xxxx"}}); err != nil {
		t.Fatal(err)
	}
	_, chain, err := LoadChainPEM(filepath.Join(dir, FileSPCert))
	if err != nil {
		t.Fatal(err)
	}
	l, err := TNAuthListOf(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	want := TNAuthList{SPCs: []string{"616H"}, Ranges: []TNRange{{"13105550000", 10000}}, TNs: []string{"12025550100"}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("TNAuthListOf = %+v, want %+v", l, want)
	}
	// The intermediate has none.
	if _, err := TNAuthListOf(chain[1]); !errors.Is(err, ErrNoTNAuthList) {
		t.Fatalf("intermediate: %v, want ErrNoTNAuthList", err)
	}
	if _, err := TNAuthListOf(nil); !errors.Is(err, ErrNoTNAuthList) {
		t.Fatalf("nil: %v", err)
	}
	// A malformed value is an error, not a panic.
	bad := *chain[0]
	bad.Extensions = append([]pkix.Extension(nil), chain[0].Extensions...)
	for i := range bad.Extensions {
		if bad.Extensions[i].Id.Equal(OIDTNAuthList) {
			bad.Extensions[i].Value = []byte{0x30, 0x00}
		}
	}
	if _, err := TNAuthListOf(&bad); !errors.Is(err, ErrBadTNAuthList) {
		t.Fatalf("malformed: %v", err)
	}
	dup := *chain[0]
	dup.Extensions = append(append([]pkix.Extension(nil), chain[0].Extensions...), pkix.Extension{Id: OIDTNAuthList, Value: mustHex(t, realSPCOnly)})
	if _, err := TNAuthListOf(&dup); !errors.Is(err, ErrBadTNAuthList) {
		t.Fatalf("duplicate: %v", err)
	}
}

// FuzzParseTNAuthList: never panic; whatever parses re-encodes and parses
// back to the same value; Covers and String never panic.
func FuzzParseTNAuthList(f *testing.F) {
	seeds := []TNAuthList{
		{SPCs: []string{"TEST01"}},
		{SPCs: []string{"996H"}},
		{TNs: []string{"12025550100", "*67", "#"}},
		{Ranges: []TNRange{{"12025550100", 100}, {"1", 1 << 40}}},
		{SPCs: []string{"616H", "X"}, Ranges: []TNRange{{"4420", 10}}, TNs: []string{"123456789012345"}},
		{SPCs: []string{strings.Repeat("A", 200)}},
	}
	for _, s := range seeds {
		der, err := s.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add(mustHex(f, realSPCOnly))
	f.Add(mustHex(f, "30 0c a1 0a 30 08 16 01 31 02 01 05 05 00"))
	f.Add(mustHex(f, "30 06 80 04 39 39 36 48"))
	f.Add([]byte{})
	// A real DER from a generated certificate.
	dir := f.TempDir()
	if err := InitPKI(InitOptions{Dir: dir, TNs: []string{"12025550100", "1310555xxxx", "14155550100-14155550199"}}); err != nil {
		f.Fatal(err)
	}
	_, chain, err := LoadChainPEM(filepath.Join(dir, FileSPCert))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range chain[0].Extensions {
		if e.Id.Equal(OIDTNAuthList) {
			f.Add(e.Value)
		}
	}

	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := ParseTNAuthList(der)
		if err != nil {
			if !l.Empty() {
				t.Fatalf("partial result with error: %+v", l)
			}
			return
		}
		if l.Empty() {
			t.Fatal("parsed an empty list without error")
		}
		_ = l.String()
		_ = l.Covers("12025550100")
		_ = l.Covers(string(der))
		for _, r := range l.Ranges {
			_ = l.Covers(r.Start)
		}
		enc, err := l.Encode()
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", l, err)
		}
		back, err := ParseTNAuthList(enc)
		if err != nil {
			t.Fatalf("re-parse of our encoding: %v", err)
		}
		if !reflect.DeepEqual(back, l) {
			t.Fatalf("re-parse = %+v, want %+v", back, l)
		}
		// Our encoding is canonical: without range extensions and with
		// entries grouped by kind, it is the input itself.
		if len(l.SPCs)+len(l.Ranges)+len(l.TNs) == 1 && len(l.Ranges) == 0 && !bytes.Equal(enc, der) {
			t.Fatalf("single entry re-encodes differently: % x vs % x", enc, der)
		}
	})
}
