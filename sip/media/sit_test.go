package media

import (
	"math"
	"testing"
)

// goertzel is the power of frequency hz in samples (the detector a
// call-progress analyser uses for SIT).
func goertzel(samples []int16, hz float64) float64 {
	w := 2 * math.Pi * hz / SampleRate
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	return (s1*s1 + s2*s2 - coeff*s1*s2) / float64(len(samples)*len(samples))
}

// TestSITAfterG711: every sequence, once through G.711 and back, holds its
// three frequencies in order, each segment for its length, and a detector
// tells low from high: the frequency it should hear is at least 20 dB over
// the other candidate of the same segment.
func TestSITAfterG711(t *testing.T) {
	for _, tc := range []struct {
		sit  SIT
		want []Segment
	}{
		{SITIntercept, []Segment{{913.8, 274}, {1370.6, 274}, {1776.7, 380}}},
		{SITVacant, []Segment{{985.2, 380}, {1370.6, 274}, {1776.7, 380}}},
		{SITReorder, []Segment{{913.8, 274}, {1428.5, 380}, {1776.7, 380}}},
		{SITNoCircuit, []Segment{{985.2, 380}, {1428.5, 380}, {1776.7, 380}}},
	} {
		for _, codec := range []Codec{PCMU, PCMA} {
			t.Run(string(tc.sit)+"/"+codec.Name, func(t *testing.T) {
				pcm, err := tc.sit.Samples()
				if err != nil {
					t.Fatal(err)
				}
				audio := codec.Decode(nil, codec.Encode(nil, pcm))
				total := 0
				for _, s := range tc.want {
					total += s.Ms * SampleRate / 1000
				}
				if len(audio) != total {
					t.Fatalf("%d samples, want %d (%d ms)", len(audio), total, total/8)
				}
				other := map[float64]float64{913.8: 985.2, 985.2: 913.8, 1370.6: 1428.5, 1428.5: 1370.6, 1776.7: 1370.6}
				at := 0
				for i, s := range tc.want {
					n := s.Ms * SampleRate / 1000
					// The middle of the segment: its edges are the next one's.
					seg := audio[at+n/8 : at+n-n/8]
					on, off := goertzel(seg, s.Hz), goertzel(seg, other[s.Hz])
					if on < 100*off {
						t.Errorf("segment %d: %.1f Hz at %.3g, %.1f Hz at %.3g: not 20 dB apart", i+1, s.Hz, on, other[s.Hz], off)
					}
					at += n
				}
				// -24 dBm0 nominal, ±1.5 dB (E.180): RMS of a sine is peak/√2.
				var sum float64
				for _, x := range audio {
					sum += float64(x) * float64(x)
				}
				rms := math.Sqrt(sum / float64(len(audio)))
				dBm0 := 20*math.Log10(rms*math.Sqrt2/32767) + 3.17
				if dBm0 < -25.5 || dBm0 > -22.5 {
					t.Errorf("level %.1f dBm0, want -24 ± 1.5", dBm0)
				}
			})
		}
	}
	if s, err := SITNone.Samples(); err != nil || len(s) != 0 {
		t.Errorf("none: %d samples (%v)", len(s), err)
	}
	if _, err := SIT("busy").Samples(); err == nil {
		t.Error("an unknown SIT rendered")
	}
}

func TestCodecByName(t *testing.T) {
	for name, pt := range map[string]uint8{"PCMU": 0, "PCMA": 8} {
		c, err := CodecByName(name)
		if err != nil || c.PayloadType != pt {
			t.Errorf("%s: %+v %v", name, c, err)
		}
	}
	if _, err := CodecByName("G722"); err == nil {
		t.Error("G722 accepted")
	}
}
