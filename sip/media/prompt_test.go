package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A tiny WAV writer: chunks are built one by one so tests can misorder,
// omit, pad or truncate them.

func chunk(id string, body []byte) []byte {
	b := []byte(id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0) // RIFF pads odd chunks to an even length
	}
	return b
}

// chunkSized writes a chunk header declaring size bytes but carrying body.
func chunkSized(id string, size uint32, body []byte) []byte {
	b := []byte(id)
	b = binary.LittleEndian.AppendUint32(b, size)
	return append(b, body...)
}

func riff(chunks ...[]byte) []byte {
	body := []byte("WAVE")
	for _, c := range chunks {
		body = append(body, c...)
	}
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func fmtChunk(tag, channels uint16, rate uint32, bits uint16) []byte {
	align := channels * bits / 8
	le := binary.LittleEndian
	b := le.AppendUint16(nil, tag)
	b = le.AppendUint16(b, channels)
	b = le.AppendUint32(b, rate)
	b = le.AppendUint32(b, rate*uint32(align))
	b = le.AppendUint16(b, align)
	b = le.AppendUint16(b, bits)
	return chunk("fmt ", b)
}

// fmtExtensible is a 40-byte WAVE_FORMAT_EXTENSIBLE fmt chunk with sub.
func fmtExtensible(sub, channels uint16, rate uint32, bits uint16) []byte {
	align := channels * bits / 8
	le := binary.LittleEndian
	b := le.AppendUint16(nil, waveExtensible)
	b = le.AppendUint16(b, channels)
	b = le.AppendUint32(b, rate)
	b = le.AppendUint32(b, rate*uint32(align))
	b = le.AppendUint16(b, align)
	b = le.AppendUint16(b, bits)
	b = le.AppendUint16(b, 22)   // cbSize
	b = le.AppendUint16(b, bits) // valid bits
	b = le.AppendUint32(b, 4)    // channel mask: front center
	b = le.AppendUint16(b, sub)
	b = append(b, ksdataGUIDTail...)
	return chunk("fmt ", b)
}

func pcm16(samples ...int16) []byte {
	var b []byte
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

var somePCM = []int16{0, 1000, -1000, 32767, -32768, 12345}

func TestReadPrompt(t *testing.T) {
	// G.711 code words whose linear values the ITU-T tables fix.
	muLaw := []byte{0xFF, 0x80, 0x00, 0xEF}
	muLawWant := []int16{0, 32124, -32124, 132}
	aLaw := []byte{0xD5, 0x55, 0xAA, 0x2A}
	aLawWant := []int16{8, -8, 32256, -32256}

	tests := []struct {
		name    string
		wav     []byte
		want    []int16 // samples, when the file is accepted
		enc     string
		wantErr []string // substrings of the error, when refused
	}{
		{name: "16-bit PCM", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("data", pcm16(somePCM...))),
			want: somePCM, enc: "16-bit PCM"},
		{name: "mu-law", wav: riff(fmtChunk(waveMuLaw, 1, 8000, 8), chunk("data", muLaw)),
			want: muLawWant, enc: "mu-law"},
		{name: "A-law", wav: riff(fmtChunk(waveALaw, 1, 8000, 8), chunk("data", aLaw)),
			want: aLawWant, enc: "A-law"},
		{name: "extensible PCM", wav: riff(fmtExtensible(wavePCM, 1, 8000, 16), chunk("data", pcm16(somePCM...))),
			want: somePCM, enc: "16-bit PCM"},
		{name: "LIST chunk skipped, odd-sized, before and after fmt",
			wav: riff(chunk("LIST", []byte("INFOISFT\x03\x00\x00\x00ab\x00")), fmtChunk(wavePCM, 1, 8000, 16),
				chunk("fact", []byte{1, 0, 0, 0}), chunk("LIST", []byte("x")), chunk("data", pcm16(somePCM...))),
			want: somePCM, enc: "16-bit PCM"},
		{name: "odd-sized mu-law data then trailing chunk",
			wav:  riff(fmtChunk(waveMuLaw, 1, 8000, 8), chunk("data", muLaw[:3]), chunk("LIST", []byte("INFO"))),
			want: muLawWant[:3], enc: "mu-law"},
		{name: "fmt chunk with extra bytes", wav: riff(
			chunk("fmt ", append(fmtChunk(wavePCM, 1, 8000, 16)[8:], 0, 0, 7)), chunk("data", pcm16(somePCM...))),
			want: somePCM, enc: "16-bit PCM"},

		{name: "44.1 kHz stereo refused", wav: riff(fmtChunk(wavePCM, 2, 44100, 16), chunk("data", pcm16(1, 2))),
			wantErr: []string{"44100 Hz stereo 16-bit PCM; want 8000 Hz mono 16-bit PCM or G.711 (mu-law/A-law)", "sox"}},
		{name: "44.1 kHz mono refused", wav: riff(fmtChunk(wavePCM, 1, 44100, 16), chunk("data", pcm16(1))),
			wantErr: []string{"44100 Hz mono 16-bit PCM; want 8000 Hz mono"}},
		{name: "16 kHz refused", wav: riff(fmtChunk(wavePCM, 1, 16000, 16), chunk("data", pcm16(1))),
			wantErr: []string{"16000 Hz mono 16-bit PCM; want"}},
		{name: "stereo refused", wav: riff(fmtChunk(wavePCM, 2, 8000, 16), chunk("data", pcm16(1, 2))),
			wantErr: []string{"8000 Hz stereo 16-bit PCM; want"}},
		{name: "stereo mu-law refused", wav: riff(fmtChunk(waveMuLaw, 2, 8000, 8), chunk("data", muLaw)),
			wantErr: []string{"8000 Hz stereo 8-bit mu-law; want"}},
		{name: "8-bit PCM refused", wav: riff(fmtChunk(wavePCM, 1, 8000, 8), chunk("data", []byte{128, 129})),
			wantErr: []string{"8000 Hz mono 8-bit PCM; want"}},
		{name: "24-bit refused", wav: riff(fmtChunk(wavePCM, 1, 8000, 24), chunk("data", make([]byte, 6))),
			wantErr: []string{"8000 Hz mono 24-bit PCM; want"}},
		{name: "extensible 24-bit refused", wav: riff(fmtExtensible(wavePCM, 1, 8000, 24), chunk("data", make([]byte, 6))),
			wantErr: []string{"8000 Hz mono 24-bit PCM (extensible); want"}},
		{name: "float refused", wav: riff(fmtChunk(waveFloat, 1, 8000, 32), chunk("data", make([]byte, 8))),
			wantErr: []string{"8000 Hz mono 32-bit float; want"}},
		{name: "extensible float refused", wav: riff(fmtExtensible(waveFloat, 1, 8000, 32), chunk("data", make([]byte, 8))),
			wantErr: []string{"32-bit float (extensible); want"}},
		{name: "16-bit mu-law refused", wav: riff(fmtChunk(waveMuLaw, 1, 8000, 16), chunk("data", pcm16(1))),
			wantErr: []string{"8000 Hz mono 16-bit mu-law; want"}},
		{name: "ADPCM refused", wav: riff(fmtChunk(0x0011, 1, 8000, 4), chunk("data", make([]byte, 8))),
			wantErr: []string{"4-bit format 0x0011; want"}},
		{name: "missing fmt", wav: riff(chunk("LIST", []byte("INFO"))),
			wantErr: []string{"no fmt chunk"}},
		{name: "data before fmt", wav: riff(chunk("data", pcm16(somePCM...)), fmtChunk(wavePCM, 1, 8000, 16)),
			wantErr: []string{"data chunk before fmt chunk"}},
		{name: "missing data", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("LIST", []byte("INFO"))),
			wantErr: []string{"no data chunk"}},
		{name: "two fmt chunks", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), fmtChunk(wavePCM, 1, 8000, 16)),
			wantErr: []string{"two fmt chunks"}},
		{name: "fmt too short", wav: riff(chunk("fmt ", []byte{1, 0, 1, 0}), chunk("data", pcm16(1))),
			wantErr: []string{"fmt chunk of 4 bytes is too short"}},
		{name: "damaged block align", wav: riff(chunk("fmt ", func() []byte {
			b := fmtChunk(wavePCM, 1, 8000, 16)[8:]
			b[12] = 4
			return b
		}()), chunk("data", pcm16(1))),
			wantErr: []string{"4 bytes per sample frame"}},
		{name: "truncated data", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunkSized("data", 16000, pcm16(somePCM...))),
			wantErr: []string{"truncated: data chunk says 16000 bytes, file holds 12"}},
		{name: "data size past 10 minutes", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunkSized("data", 0xFFFFFFFE, pcm16(1))),
			wantErr: []string{"longer than the 10m0s a prompt may last"}},
		{name: "half a sample", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("data", []byte{1, 2, 3})),
			wantErr: []string{"data chunk of 3 bytes is not a whole number of 2-byte samples"}},
		{name: "empty audio", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("data", nil)),
			wantErr: []string{"empty data chunk (no audio)"}},
		{name: "truncated in LIST", wav: riff(fmtChunk(wavePCM, 1, 8000, 16), chunkSized("LIST", 100, []byte("INFO"))),
			wantErr: []string{`truncated in "LIST" chunk`}},
		{name: "truncated in fmt", wav: riff(chunkSized("fmt ", 16, []byte{1, 0, 1, 0})),
			wantErr: []string{"truncated in fmt chunk"}},
		{name: "not a RIFF file", wav: []byte("ID3\x04\x00\x00\x00\x00\x00\x00 this is an mp3"),
			wantErr: []string{"not a WAV file (no RIFF/WAVE header)"}},
		{name: "RIFF but not WAVE", wav: append([]byte("RIFF\x04\x00\x00\x00AVI "), chunk("LIST", nil)...),
			wantErr: []string{"not a WAV file"}},
		{name: "empty file", wav: nil,
			wantErr: []string{"not a WAV file (shorter than a RIFF header)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ReadPrompt(bytes.NewReader(tt.wav), "prompt.wav")
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("accepted (%d samples, %s), want error %q", len(p.Samples), p.Encoding, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "prompt.wav: ") {
					t.Errorf("error %q does not start with the file name", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !slices.Equal(p.Samples, tt.want) {
				t.Errorf("samples %v, want %v", p.Samples, tt.want)
			}
			if p.Encoding != tt.enc || p.Name != "prompt.wav" {
				t.Errorf("encoding %q name %q, want %q prompt.wav", p.Encoding, p.Name, tt.enc)
			}
			if want := time.Duration(len(tt.want)) * 125 * time.Microsecond; p.Duration != want {
				t.Errorf("duration %v, want %v", p.Duration, want)
			}
		})
	}
}

func TestLoadPrompt(t *testing.T) {
	dir := t.TempDir()

	t.Run("file", func(t *testing.T) {
		// One second of audio: the duration a caller will hear.
		path := filepath.Join(dir, "one-second.wav")
		samples := make([]int16, SampleRate)
		samples[0], samples[SampleRate-1] = 7, -7
		if err := os.WriteFile(path, riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("data", pcm16(samples...))), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := LoadPrompt(path)
		if err != nil {
			t.Fatal(err)
		}
		if p.Duration != time.Second || len(p.Samples) != SampleRate || p.Samples[0] != 7 || p.Samples[SampleRate-1] != -7 {
			t.Errorf("got %v, %d samples, first %d last %d; want 1s, 8000, 7, -7",
				p.Duration, len(p.Samples), p.Samples[0], p.Samples[len(p.Samples)-1])
		}
	})

	t.Run("wrong format names the file", func(t *testing.T) {
		path := filepath.Join(dir, "cd.wav")
		if err := os.WriteFile(path, riff(fmtChunk(wavePCM, 2, 44100, 16), chunk("data", pcm16(1, 2))), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPrompt(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+": 44100 Hz stereo 16-bit PCM; want") {
			t.Errorf("error %v, want it to start with %q", err, path+": 44100 Hz stereo 16-bit PCM; want")
		}
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "nope.wav")
		_, err := LoadPrompt(path)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("error %v, want not-exist naming %s", err, path)
		}
	})
}

// TestLoadPromptSox loads what the README tells admins to run: files made
// by sox, the tool admins record prompts with (scripts/test installs it;
// without it the test is skipped, and fails with CI=true).
func TestLoadPromptSox(t *testing.T) {
	sox, err := exec.LookPath("sox")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sox not found (CI=true): install the Debian package sox")
		}
		t.Skip("sox not installed")
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string // output format options
		enc     string
		wantErr string
	}{
		{name: "16-bit", args: []string{"-r", "8000", "-c", "1", "-b", "16"}, enc: "16-bit PCM"},
		{name: "mu-law", args: []string{"-r", "8000", "-c", "1", "-e", "u-law"}, enc: "mu-law"},
		{name: "A-law", args: []string{"-r", "8000", "-c", "1", "-e", "a-law"}, enc: "A-law"},
		{name: "CD quality", args: []string{"-r", "44100", "-c", "2", "-b", "16"}, wantErr: "44100 Hz stereo 16-bit PCM; want"},
		{name: "24-bit", args: []string{"-r", "8000", "-c", "1", "-b", "24"}, wantErr: "8000 Hz mono 24-bit PCM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".wav")
			args := append([]string{"-n"}, tt.args...)
			args = append(args, path, "synth", "0.5", "sine", "440")
			if out, err := exec.Command(sox, args...).CombinedOutput(); err != nil {
				t.Fatalf("sox %v: %v\n%s", args, err, out)
			}
			p, err := LoadPrompt(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Encoding != tt.enc || p.Duration != 500*time.Millisecond || len(p.Samples) != 4000 {
				t.Fatalf("got %s %v %d samples, want %s 500ms 4000", p.Encoding, p.Duration, len(p.Samples), tt.enc)
			}
			// A 440 Hz sine at sox's default level: loud, and the sign
			// changes 2×440 times a second (so about 440 in 0.5 s).
			var peak int16
			crossings := 0
			for i, s := range p.Samples {
				peak = max(peak, s)
				if i > 0 && (s >= 0) != (p.Samples[i-1] >= 0) {
					crossings++
				}
			}
			if peak < 16000 || crossings < 430 || crossings > 450 {
				t.Errorf("peak %d, %d zero crossings; want a loud 440 Hz sine (~440 crossings)", peak, crossings)
			}
		})
	}
}

// FuzzReadPrompt: any bytes give a prompt or an error, never a panic, and
// an accepted prompt is within the cap and consistent.
func FuzzReadPrompt(f *testing.F) {
	f.Add(riff(fmtChunk(wavePCM, 1, 8000, 16), chunk("data", pcm16(somePCM...))))
	f.Add(riff(fmtChunk(waveMuLaw, 1, 8000, 8), chunk("data", []byte{1, 2, 3})))
	f.Add(riff(fmtExtensible(wavePCM, 1, 8000, 16), chunk("LIST", []byte("INFO")), chunk("data", pcm16(1, 2))))
	f.Add(riff(fmtChunk(wavePCM, 1, 8000, 16), chunkSized("data", 0x7FFFFFFF, pcm16(1))))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVE"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadPrompt(bytes.NewReader(data), "fuzz.wav")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.wav: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(p.Samples) == 0 || len(p.Samples) > maxPromptSamples {
			t.Fatalf("accepted %d samples", len(p.Samples))
		}
		// Every sample came from the input: no more than it holds.
		if len(p.Samples) > len(data) {
			t.Fatalf("%d samples from %d bytes", len(p.Samples), len(data))
		}
		if p.Duration != time.Duration(len(p.Samples))*time.Second/SampleRate {
			t.Fatalf("duration %v for %d samples", p.Duration, len(p.Samples))
		}
	})
}
