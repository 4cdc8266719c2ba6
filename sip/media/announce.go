package media

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// MaxAnnouncement bounds what one rejected caller hears (the SIT and every
// repeat of the prompt): the INVITE stays unanswered while it plays, and
// proxies upstream give up on an unanswered INVITE after 3 minutes
// (RFC 3261 timer C); two leave room for their own set-up time.
const MaxAnnouncement = 2 * time.Minute

// MaxRepeat bounds how often the prompt is played.
const MaxRepeat = 10

// Announcement is what a rejected caller hears before the final response:
// a SIT sequence, then the prompt Repeat times. Its audio is encoded once,
// in both codecs, when it is built (a configuration load), so a call only
// takes a slice of it.
type Announcement struct {
	Name     string // for logs and call records, e.g. "intercept+dnc.wav x2"
	SIT      SIT
	Prompt   string // the prompt file, "" for the SIT alone
	Repeat   int
	Duration time.Duration
	pcmu     []byte
	pcma     []byte
}

// NewAnnouncement builds sit followed by prompt (nil: none) repeat times.
// It refuses an unknown SIT, a repeat outside 1..MaxRepeat, an
// announcement with nothing to play, and one longer than MaxAnnouncement.
func NewAnnouncement(sit SIT, prompt *Prompt, repeat int) (*Announcement, error) {
	samples, err := sit.Samples()
	if err != nil {
		return nil, err
	}
	if repeat < 1 || repeat > MaxRepeat {
		return nil, fmt.Errorf("media: repeat %d out of range 1..%d", repeat, MaxRepeat)
	}
	a := &Announcement{SIT: sit, Repeat: repeat, Name: string(sit)}
	if prompt != nil {
		a.Prompt = prompt.Name
		a.Name += "+" + filepath.Base(prompt.Name)
		if repeat > 1 {
			a.Name += fmt.Sprintf(" x%d", repeat)
		}
		a.Duration = time.Duration(len(samples)+repeat*len(prompt.Samples)) * time.Second / SampleRate
		if a.Duration > MaxAnnouncement {
			return nil, fmt.Errorf("media: SIT and %d x %s of prompt last %s, more than %s", repeat, prompt.Duration, a.Duration.Round(time.Millisecond), MaxAnnouncement)
		}
		for range repeat {
			samples = append(samples, prompt.Samples...)
		}
	}
	if len(samples) == 0 {
		return nil, errors.New("media: nothing to play: sit none and no prompt")
	}
	a.Duration = time.Duration(len(samples)) * time.Second / SampleRate
	a.pcmu = PCMU.Encode(make([]byte, 0, len(samples)), samples)
	a.pcma = PCMA.Encode(make([]byte, 0, len(samples)), samples)
	return a, nil
}

// Audio is the announcement in codec c (PCMU or PCMA), shared: the caller
// must not change it.
func (a *Announcement) Audio(c Codec) []byte {
	if c.PayloadType == PCMA.PayloadType {
		return a.pcma
	}
	return a.pcmu
}
