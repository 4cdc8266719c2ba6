package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxPromptDuration caps a prompt's length: an announcement is a sentence
// or two, and the cap bounds the memory a prompt file can take (10 minutes
// of 8 kHz 16-bit audio is 9.6 MB).
const MaxPromptDuration = 10 * time.Minute

// maxPromptSamples is MaxPromptDuration in samples.
const maxPromptSamples = int(MaxPromptDuration / time.Second * SampleRate)

// Prompt is a recorded announcement, ready to stream after the SIT.
type Prompt struct {
	Name     string        // the file it was read from, for logs and errors
	Encoding string        // as stored: "16-bit PCM", "mu-law" or "A-law"
	Samples  []int16       // 8 kHz mono linear samples (G.711 decoded)
	Duration time.Duration // len(Samples) at SampleRate
}

// wantFormat ends every format error: what to record instead, in words an
// admin can turn into a sox or espeak-ng command line.
const wantFormat = "want 8000 Hz mono 16-bit PCM or G.711 (mu-law/A-law) WAV, " +
	"e.g. sox IN -r 8000 -c 1 -b 16 -e signed-integer OUT.wav"

// WAVE format tags (RFC 2361).
const (
	wavePCM        = 0x0001
	waveFloat      = 0x0003
	waveALaw       = 0x0006
	waveMuLaw      = 0x0007
	waveExtensible = 0xFFFE
)

// ksdataGUIDTail is the fixed tail of a WAVE_FORMAT_EXTENSIBLE sub-format
// GUID whose first two bytes are a format tag (00000000-0000-0010-8000-
// 00aa00389b71 with the tag in place of the leading zeros).
var ksdataGUIDTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// LoadPrompt reads the WAV file at path; see ReadPrompt. Errors name the
// file.
func LoadPrompt(path string) (*Prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // a *PathError: it names the file
	}
	defer f.Close()
	return ReadPrompt(f, path)
}

// ReadPrompt reads a WAV prompt from r; name is used in errors and kept in
// the Prompt. Only 8 kHz mono audio is accepted, as 16-bit PCM (format 1)
// or 8-bit G.711 mu-law (7) or A-law (6), also when wrapped in
// WAVE_FORMAT_EXTENSIBLE. Anything else is an error saying what the file
// holds and what is wanted: prompts are never resampled or downmixed,
// since a silent conversion would hide a mistake the admin should fix at
// the source. Chunks other than fmt and data are skipped; the fmt chunk
// must come before the data chunk, and reading stops after the data.
func ReadPrompt(r io.Reader, name string) (*Prompt, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fail("not a WAV file (shorter than a RIFF header); %s", wantFormat)
		}
		return nil, fail("read: %w", err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, fail("not a WAV file (no RIFF/WAVE header); %s", wantFormat)
	}

	var (
		f      waveFmt
		haveFm bool
	)
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if !haveFm {
					return nil, fail("no fmt chunk; %s", wantFormat)
				}
				return nil, fail("no data chunk (no audio)")
			}
			return nil, fail("read: %w", err)
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if haveFm {
				return nil, fail("two fmt chunks")
			}
			var err error
			if f, err = readFmt(r, size); err != nil {
				return nil, fail("%w", err)
			}
			haveFm = true
			if err := f.check(); err != nil {
				return nil, fail("%w", err)
			}
		case "data":
			if !haveFm {
				return nil, fail("data chunk before fmt chunk (not a valid WAV); %s", wantFormat)
			}
			return readData(r, size, f, name, fail)
		default:
			// LIST, fact, cue, bext …: metadata the audio does not need.
			if err := skip(r, size+size&1); err != nil {
				return nil, fail("truncated in %q chunk: %w", id, err)
			}
		}
	}
}

// waveFmt is the part of a fmt chunk that matters here.
type waveFmt struct {
	tag        uint16 // the sub-format's tag for WAVE_FORMAT_EXTENSIBLE
	extensible bool
	channels   uint16
	rate       uint32
	blockAlign uint16
	bits       uint16
}

// readFmt reads a fmt chunk of size bytes (and its pad byte), keeping at
// most the 40 bytes WAVE_FORMAT_EXTENSIBLE uses, so a huge size cannot make
// it allocate.
func readFmt(r io.Reader, size int64) (waveFmt, error) {
	if size < 16 {
		return waveFmt{}, fmt.Errorf("fmt chunk of %d bytes is too short (want at least 16)", size)
	}
	var b [40]byte
	n := min(size, int64(len(b)))
	if _, err := io.ReadFull(r, b[:n]); err != nil {
		return waveFmt{}, fmt.Errorf("truncated in fmt chunk: %w", err)
	}
	if err := skip(r, size-n+size&1); err != nil {
		return waveFmt{}, fmt.Errorf("truncated in fmt chunk: %w", err)
	}
	le := binary.LittleEndian
	f := waveFmt{
		tag:        le.Uint16(b[0:2]),
		channels:   le.Uint16(b[2:4]),
		rate:       le.Uint32(b[4:8]),
		blockAlign: le.Uint16(b[12:14]),
		bits:       le.Uint16(b[14:16]),
	}
	if f.tag == waveExtensible {
		if n < 40 {
			return waveFmt{}, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes is too short (want 40)", size)
		}
		if !bytes.Equal(b[26:40], ksdataGUIDTail) {
			return waveFmt{}, fmt.Errorf("WAVE_FORMAT_EXTENSIBLE with an unknown sub-format; %s", wantFormat)
		}
		f.tag = le.Uint16(b[24:26])
		f.extensible = true
		if valid := le.Uint16(b[18:20]); valid != 0 && valid != f.bits {
			return waveFmt{}, fmt.Errorf("%d valid bits in %d-bit samples; %s", valid, f.bits, wantFormat)
		}
	}
	return f, nil
}

// check refuses every format but 8 kHz mono 16-bit PCM or 8-bit G.711.
func (f waveFmt) check() error {
	ok := f.rate == SampleRate && f.channels == 1 &&
		((f.tag == wavePCM && f.bits == 16) || ((f.tag == waveMuLaw || f.tag == waveALaw) && f.bits == 8))
	if !ok {
		return fmt.Errorf("%s; %s", f, wantFormat)
	}
	if want := f.bits / 8; f.blockAlign != want {
		return fmt.Errorf("fmt chunk says %d bytes per sample frame, %s has %d (damaged header)", f.blockAlign, f, want)
	}
	return nil
}

// String describes the format as an admin would: "44100 Hz stereo 16-bit PCM".
func (f waveFmt) String() string {
	var ch string
	switch f.channels {
	case 1:
		ch = "mono"
	case 2:
		ch = "stereo"
	default:
		ch = fmt.Sprintf("%d-channel", f.channels)
	}
	var enc string
	switch f.tag {
	case wavePCM:
		enc = fmt.Sprintf("%d-bit PCM", f.bits)
	case waveFloat:
		enc = fmt.Sprintf("%d-bit float", f.bits)
	case waveMuLaw:
		enc = fmt.Sprintf("%d-bit mu-law", f.bits)
	case waveALaw:
		enc = fmt.Sprintf("%d-bit A-law", f.bits)
	default:
		enc = fmt.Sprintf("%d-bit format 0x%04X", f.bits, f.tag)
	}
	if f.extensible {
		enc += " (extensible)"
	}
	return fmt.Sprintf("%d Hz %s %s", f.rate, ch, enc)
}

// readData reads the data chunk of size bytes and decodes it.
func readData(r io.Reader, size int64, f waveFmt, name string, fail func(string, ...any) error) (*Prompt, error) {
	if size == 0 {
		return nil, fail("empty data chunk (no audio)")
	}
	frame := int64(f.blockAlign)
	if size%frame != 0 {
		return nil, fail("data chunk of %d bytes is not a whole number of %d-byte samples (damaged file)", size, frame)
	}
	if size/frame > int64(maxPromptSamples) {
		return nil, fail("%v of audio is longer than the %v a prompt may last",
			time.Duration(size/frame)*time.Second/SampleRate, MaxPromptDuration)
	}
	// ReadAll grows with what the file really holds, so a data size that
	// lies about a short file costs no more memory than the file.
	raw, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return nil, fail("read: %w", err)
	}
	if int64(len(raw)) < size {
		return nil, fail("truncated: data chunk says %d bytes, file holds %d", size, len(raw))
	}
	p := &Prompt{Name: name}
	switch f.tag {
	case wavePCM:
		p.Encoding = "16-bit PCM"
		p.Samples = make([]int16, len(raw)/2)
		for i := range p.Samples {
			p.Samples[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case waveMuLaw:
		p.Encoding = "mu-law"
		p.Samples = PCMU.Decode(make([]int16, 0, len(raw)), raw)
	case waveALaw:
		p.Encoding = "A-law"
		p.Samples = PCMA.Decode(make([]int16, 0, len(raw)), raw)
	}
	p.Duration = time.Duration(len(p.Samples)) * time.Second / SampleRate
	return p, nil
}

// skip discards n bytes of r.
func skip(r io.Reader, n int64) error {
	if n == 0 {
		return nil
	}
	got, err := io.CopyN(io.Discard, r, n)
	if err == io.EOF {
		return fmt.Errorf("%d of %d bytes: %w", got, n, io.ErrUnexpectedEOF)
	}
	return err
}
