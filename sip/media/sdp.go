package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Why an offer cannot carry an announcement. Each means: send the plain
// reject, never a broken stream. Callers test them with errors.Is.
var (
	// ErrNoOffer: the INVITE has no SDP body (a late offer).
	ErrNoOffer = errors.New("media: no SDP offer")
	// ErrBadOffer: the SDP does not parse, or its c= is unusable.
	ErrBadOffer = errors.New("media: malformed SDP offer")
	// ErrNoAudio: no enabled m=audio stream over plain RTP/AVP.
	ErrNoAudio = errors.New("media: no RTP/AVP audio stream offered")
	// ErrNoCodec: the audio stream offers neither PCMU nor PCMA.
	ErrNoCodec = errors.New("media: neither PCMU nor PCMA offered")
	// ErrHold: the caller cannot receive (0.0.0.0 / ::, a=sendonly, a=inactive).
	ErrHold = errors.New("media: caller does not receive audio")
)

// Answer is the outcome of an offer stirgate can play an announcement to.
type Answer struct {
	Codec  Codec          // PCMU or PCMA, whichever the offer lists first
	Target netip.AddrPort // where the caller receives RTP: c= address, m= port
	SDP    []byte         // the answer body for the 183
}

// ptime is the packet length stirgate sends, in milliseconds.
const ptime = 20

// AnswerOffer reads an SDP offer and, when stirgate can send the caller an
// announcement, returns the codec, the caller's RTP target and an SDP answer
// (RFC 3264) with a send-only audio stream from local. It uses the first
// enabled m=audio over RTP/AVP (plain RTP: RTP/SAVP and RTP/AVPF are not
// what stirgate sends), and the static payload types 0 (PCMU) and 8 (PCMA)
// only; every other m-line is answered with port 0, in the offer's order.
// sessionID is the o= session id and version of the answer.
func AnswerOffer(offer []byte, local netip.AddrPort, sessionID uint64) (Answer, error) {
	if !local.IsValid() || local.Port() == 0 || local.Addr().IsUnspecified() {
		// A 0.0.0.0 or port 0 answer would itself mean "no media".
		return Answer{}, fmt.Errorf("media: local RTP address %v is not a unicast address and port", local)
	}
	if len(strings.TrimSpace(string(offer))) == 0 {
		return Answer{}, ErrNoOffer
	}
	var desc sdp.SessionDescription
	if err := desc.Unmarshal(offer); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}

	chosen, err := audioStream(&desc)
	if err != nil {
		return Answer{}, err
	}
	md := desc.MediaDescriptions[chosen]
	if dir := direction(&desc, md); dir == "sendonly" || dir == "inactive" {
		return Answer{}, fmt.Errorf("%w: audio stream is a=%s", ErrHold, dir)
	}
	addr, err := connectionAddr(&desc, md)
	if err != nil {
		return Answer{}, err
	}
	codec, ok := pickCodec(md)
	if !ok {
		return Answer{}, fmt.Errorf("%w: audio formats %s", ErrNoCodec, strings.Join(md.MediaName.Formats, " "))
	}
	body, err := answerSDP(&desc, chosen, codec, local, sessionID)
	if err != nil {
		return Answer{}, err
	}
	return Answer{
		Codec:  codec,
		Target: netip.AddrPortFrom(addr, uint16(md.MediaName.Port.Value)),
		SDP:    body,
	}, nil
}

// audioStream returns the index of the first enabled m=audio over RTP/AVP,
// or why there is none.
func audioStream(desc *sdp.SessionDescription) (int, error) {
	var seen []string
	for i, md := range desc.MediaDescriptions {
		if md.MediaName.Media != "audio" {
			continue
		}
		proto := strings.Join(md.MediaName.Protos, "/")
		port := md.MediaName.Port.Value
		if proto == "RTP/AVP" && port > 0 && port <= 65535 {
			return i, nil
		}
		seen = append(seen, fmt.Sprintf("%s port %d", proto, port))
	}
	if len(seen) == 0 {
		return 0, fmt.Errorf("%w: no m=audio line", ErrNoAudio)
	}
	return 0, fmt.Errorf("%w: audio offered as %s", ErrNoAudio, strings.Join(seen, ", "))
}

// direction is the stream's a=sendrecv|sendonly|recvonly|inactive, the
// media level overriding the session level (RFC 3264 section 5.1).
func direction(desc *sdp.SessionDescription, md *sdp.MediaDescription) string {
	for _, attrs := range [][]sdp.Attribute{md.Attributes, desc.Attributes} {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
	}
	return "sendrecv"
}

// connectionAddr is the stream's unicast address: its own c= or else the
// session's.
func connectionAddr(desc *sdp.SessionDescription, md *sdp.MediaDescription) (netip.Addr, error) {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = desc.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, fmt.Errorf("%w: no c= line for the audio stream", ErrBadOffer)
	}
	if ci.NetworkType != "IN" {
		return netip.Addr{}, fmt.Errorf("%w: c= network type %q is not IN", ErrBadOffer, ci.NetworkType)
	}
	if ci.Address.TTL != nil || ci.Address.Range != nil {
		return netip.Addr{}, fmt.Errorf("%w: c= %s is a multicast group", ErrBadOffer, ci.Address)
	}
	// An FQDN is legal in c= (RFC 4566) but no phone sends one; stirgate
	// does not resolve names on the reject path.
	addr, err := netip.ParseAddr(ci.Address.Address)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: c= address %q is not an IP address", ErrBadOffer, ci.Address.Address)
	}
	addr = addr.Unmap()
	switch {
	case ci.AddressType == "IP4" && !addr.Is4(), ci.AddressType == "IP6" && !addr.Is6():
		return netip.Addr{}, fmt.Errorf("%w: c= address %s is not %s", ErrBadOffer, addr, ci.AddressType)
	case ci.AddressType != "IP4" && ci.AddressType != "IP6":
		return netip.Addr{}, fmt.Errorf("%w: c= address type %q", ErrBadOffer, ci.AddressType)
	case addr.IsUnspecified():
		// RFC 2543 hold: the caller is not listening.
		return netip.Addr{}, fmt.Errorf("%w: c= %s (hold)", ErrHold, addr)
	case addr.IsMulticast():
		return netip.Addr{}, fmt.Errorf("%w: c= %s is a multicast group", ErrBadOffer, addr)
	}
	return addr, nil
}

// pickCodec returns PCMU or PCMA, whichever comes first in the m= format
// list. Only the static numbers count; one whose a=rtpmap redefines it as
// something else is skipped.
func pickCodec(md *sdp.MediaDescription) (Codec, bool) {
	for _, f := range md.MediaName.Formats {
		var c Codec
		switch f {
		case "0":
			c = PCMU
		case "8":
			c = PCMA
		default:
			continue
		}
		if name, rate, ok := rtpmap(md, f); ok && (!strings.EqualFold(name, c.Name) || rate != "8000") {
			continue
		}
		return c, true
	}
	return Codec{}, false
}

// rtpmap returns the encoding name and clock rate of a=rtpmap:<pt>.
func rtpmap(md *sdp.MediaDescription, pt string) (name, rate string, ok bool) {
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		num, enc, found := strings.Cut(strings.TrimSpace(a.Value), " ")
		if !found || num != pt {
			continue
		}
		parts := strings.Split(strings.TrimSpace(enc), "/")
		if len(parts) < 2 {
			return parts[0], "", true
		}
		return parts[0], parts[1], true
	}
	return "", "", false
}

// answerSDP builds the answer: one m-line per offered m-line in order
// (RFC 3264 section 6), the chosen one send-only from local with codec,
// every other one rejected with port 0.
func answerSDP(offer *sdp.SessionDescription, chosen int, codec Codec, local netip.AddrPort, sessionID uint64) ([]byte, error) {
	addr := local.Addr().Unmap().WithZone("")
	addrType := "IP4"
	if addr.Is6() {
		addrType = "IP6"
	}
	host := addr.String()
	pt := strconv.Itoa(int(codec.PayloadType))
	ans := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: "stirgate", SessionID: sessionID, SessionVersion: sessionID,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: host,
		},
		SessionName: "stirgate",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: host},
		},
		TimeDescriptions: []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
	for i, md := range offer.MediaDescriptions {
		if i == chosen {
			ans.MediaDescriptions = append(ans.MediaDescriptions, &sdp.MediaDescription{
				MediaName: sdp.MediaName{
					Media: "audio", Port: sdp.RangedPort{Value: int(local.Port())},
					Protos: []string{"RTP", "AVP"}, Formats: []string{pt},
				},
				Attributes: []sdp.Attribute{
					sdp.NewAttribute("rtpmap", pt+" "+codec.Name+"/"+strconv.Itoa(SampleRate)),
					sdp.NewAttribute("ptime", strconv.Itoa(ptime)),
					sdp.NewPropertyAttribute("sendonly"),
				},
			})
			continue
		}
		// A rejected stream keeps the offer's media, proto and formats
		// (at least one format is required); only the port becomes 0.
		formats := md.MediaName.Formats
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		protos := md.MediaName.Protos
		if len(protos) == 0 {
			protos = []string{"RTP", "AVP"}
		}
		ans.MediaDescriptions = append(ans.MediaDescriptions, &sdp.MediaDescription{
			MediaName: sdp.MediaName{Media: md.MediaName.Media, Protos: protos, Formats: formats},
		})
	}
	body, err := ans.Marshal()
	if err != nil {
		return nil, fmt.Errorf("media: marshal SDP answer: %w", err)
	}
	return body, nil
}
