package media

import (
	"fmt"

	"github.com/zaf/g711"
)

// Codec is a G.711 variant: the payload types 0 and 8 of RFC 3551.
type Codec struct {
	Name        string // PCMU | PCMA
	PayloadType uint8
	encode      func(int16) uint8
	decode      func(uint8) int16
}

// The two codecs every SIP phone speaks; github.com/zaf/g711 does the
// companding (the ITU-T G.711 tables, tested against them upstream).
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0, encode: g711.EncodeUlawFrame, decode: g711.DecodeUlawFrame}
	PCMA = Codec{Name: "PCMA", PayloadType: 8, encode: g711.EncodeAlawFrame, decode: g711.DecodeAlawFrame}
)

// CodecByName returns PCMU or PCMA.
func CodecByName(name string) (Codec, error) {
	switch name {
	case "PCMU":
		return PCMU, nil
	case "PCMA":
		return PCMA, nil
	}
	return Codec{}, fmt.Errorf("media: codec %q is not PCMU or PCMA", name)
}

// Encode appends the G.711 bytes of samples to dst.
func (c Codec) Encode(dst []byte, samples []int16) []byte {
	for _, s := range samples {
		dst = append(dst, c.encode(s))
	}
	return dst
}

// Decode appends the linear samples of G.711 bytes to dst.
func (c Codec) Decode(dst []int16, payload []byte) []int16 {
	for _, b := range payload {
		dst = append(dst, c.decode(b))
	}
	return dst
}
