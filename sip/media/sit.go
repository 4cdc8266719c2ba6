// Package media makes the audio of intercept announcements: the Special
// Information Tones that precede them, G.711 encoding, and (to come, issue
// 15) prompts and the paced RTP streams that carry them as early media.
package media

import (
	"fmt"
	"math"
)

// SampleRate is the rate of all audio here: G.711 narrowband, 8 kHz.
const SampleRate = 8000

// SIT is a Special Information Tone sequence (Telcordia GR-1162, ANSI
// T1.401): three tone segments whose frequency (low or high) and length
// (short 274 ms, long 380 ms) in the first two tell machines why the call
// failed; the third is always 1776.7 Hz for 380 ms. Autodialers that hear
// one stop calling the number.
type SIT string

// The SIT sequences an intercept may play ("none": no tone).
const (
	SITIntercept SIT = "intercept" // IC: low short, low short (number not in service, calls refused)
	SITVacant    SIT = "vacant"    // VC: high long, low short
	SITReorder   SIT = "reorder"   // RO: low short, high long
	SITNoCircuit SIT = "no_circuit"
	SITNone      SIT = "none"
)

// Segment is one tone of a sequence.
type Segment struct {
	Hz float64
	Ms int
}

// SIT segment frequencies and lengths.
const (
	lowHz1, highHz1 = 913.8, 985.2
	lowHz2, highHz2 = 1370.6, 1428.5
	thirdHz         = 1776.7
	shortMs, longMs = 274, 380
)

// Segments returns the three tones of s (none for SITNone).
func (s SIT) Segments() ([]Segment, error) {
	third := Segment{thirdHz, longMs}
	switch s {
	case SITIntercept:
		return []Segment{{lowHz1, shortMs}, {lowHz2, shortMs}, third}, nil
	case SITVacant:
		return []Segment{{highHz1, longMs}, {lowHz2, shortMs}, third}, nil
	case SITReorder:
		return []Segment{{lowHz1, shortMs}, {highHz2, longMs}, third}, nil
	case SITNoCircuit:
		return []Segment{{highHz1, longMs}, {highHz2, longMs}, third}, nil
	case SITNone:
		return nil, nil
	}
	return nil, fmt.Errorf("media: unknown SIT %q (want intercept, vacant, reorder, no_circuit or none)", string(s))
}

// sitLevel is the peak amplitude (16-bit linear) of each tone: -24 dBm0,
// the nominal SIT level of ITU-T E.180. In G.711 a sine at full scale is
// +3.17 dBm0 (mu-law), so 0 dBm0 peaks at 32767 * 10^(-3.17/20).
var sitLevel = 32767 * math.Pow(10, -3.17/20) * math.Pow(10, -24.0/20)

// Samples renders s as 16-bit linear samples at SampleRate. Each segment
// starts and ends at a zero crossing of its own sine (no click), with no
// silence between segments (GR-1162 allows at most 4 ms).
func (s SIT) Samples() ([]int16, error) {
	segs, err := s.Segments()
	if err != nil {
		return nil, err
	}
	var out []int16
	for _, seg := range segs {
		n := seg.Ms * SampleRate / 1000
		w := 2 * math.Pi * seg.Hz / SampleRate
		for i := range n {
			out = append(out, int16(math.Round(sitLevel*math.Sin(w*float64(i)))))
		}
	}
	return out, nil
}
