package media

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewAnnouncement(t *testing.T) {
	second := &Prompt{Name: "/etc/stirgate/prompts/dnc.wav", Samples: make([]int16, SampleRate), Duration: time.Second}
	for i := range second.Samples {
		second.Samples[i] = int16(i%200 - 100)
	}
	long := &Prompt{Name: "long.wav", Samples: make([]int16, 61*SampleRate), Duration: 61 * time.Second}
	sitMs := 274 + 274 + 380
	tests := []struct {
		name     string
		sit      SIT
		prompt   *Prompt
		repeat   int
		wantName string
		wantMs   int
		wantErr  string
	}{
		{"sit and prompt", SITIntercept, second, 1, "intercept+dnc.wav", sitMs + 1000, ""},
		{"prompt twice", SITReorder, second, 2, "reorder+dnc.wav x2", 274 + 380 + 380 + 2000, ""},
		{"prompt alone", SITNone, second, 3, "none+dnc.wav x3", 3000, ""},
		{"sit alone", SITVacant, nil, 1, "vacant", 380 + 274 + 380, ""},
		{"nothing", SITNone, nil, 1, "", 0, "nothing to play"},
		{"unknown sit", SIT("busy"), second, 1, "", 0, `unknown SIT "busy"`},
		{"repeat 0", SITIntercept, second, 0, "", 0, "repeat 0 out of range 1..10"},
		{"repeat 11", SITIntercept, second, 11, "", 0, "repeat 11 out of range"},
		{"too long", SITIntercept, long, 2, "", 0, "more than 2m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAnnouncement(tt.sit, tt.prompt, tt.repeat)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != tt.wantName || a.Duration != time.Duration(tt.wantMs)*time.Millisecond {
				t.Errorf("name %q duration %s, want %q %dms", a.Name, a.Duration, tt.wantName, tt.wantMs)
			}
			for _, c := range []Codec{PCMU, PCMA} {
				audio := a.Audio(c)
				if len(audio) != tt.wantMs*SampleRate/1000 {
					t.Fatalf("%s: %d bytes, want %d", c.Name, len(audio), tt.wantMs*SampleRate/1000)
				}
				// The audio is the SIT, then the prompt, in this codec.
				sit, _ := tt.sit.Samples()
				want := c.Encode(nil, sit)
				for range tt.repeat {
					if tt.prompt != nil {
						want = c.Encode(want, tt.prompt.Samples)
					}
				}
				if !slices.Equal(audio, want) {
					t.Errorf("%s: audio is not the SIT then the prompt %d times", c.Name, tt.repeat)
				}
			}
		})
	}
}
