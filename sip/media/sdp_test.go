package media

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// crlf turns a readable offer into the CRLF lines phones send.
func crlf(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

// Offers as phones and PBXes send them.
var (
	linphoneOffer = crlf(
		"v=0",
		"o=alice 1234 5678 IN IP4 192.168.1.20",
		"s=Talk",
		"c=IN IP4 192.168.1.20",
		"t=0 0",
		"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
		"m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
		"a=rtpmap:96 opus/48000/2",
		"a=fmtp:96 useinbandfec=1",
		"a=rtpmap:97 speex/16000",
		"a=fmtp:97 vbr=on",
		"a=rtpmap:98 speex/8000",
		"a=fmtp:98 vbr=on",
		"a=fmtp:18 annexb=yes",
		"a=rtpmap:101 telephone-event/48000",
		"a=rtpmap:99 telephone-event/16000",
		"a=rtpmap:100 telephone-event/8000",
		"a=rtcp-fb:* trr-int 1000",
		"a=rtcp-fb:* ccm tmmbr",
	)
	zoiperOffer = crlf(
		"v=0",
		"o=Z 0 1 IN IP4 10.0.0.5",
		"s=Z",
		"c=IN IP4 10.0.0.5",
		"t=0 0",
		"m=audio 52000 RTP/AVP 106 9 98 101 0 8 3",
		"a=rtpmap:106 opus/48000/2",
		"a=fmtp:106 sprop-maxcapturerate=16000; minptime=20; useinbandfec=1",
		"a=rtpmap:98 telephone-event/48000",
		"a=fmtp:98 0-16",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=sendrecv",
		"a=rtcp-mux",
	)
	asteriskPCMAFirst = crlf(
		"v=0",
		"o=- 1712345678 1712345678 IN IP4 203.0.113.10",
		"s=Asterisk",
		"c=IN IP4 203.0.113.10",
		"t=0 0",
		"m=audio 12034 RTP/AVP 8 0 101",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=maxptime:150",
		"a=sendrecv",
	)
	videoThenAudio = crlf(
		"v=0",
		"o=bob 42 42 IN IP4 192.0.2.33",
		"s=-",
		"c=IN IP4 192.0.2.33",
		"t=0 0",
		"m=video 9078 RTP/AVP 96 97",
		"a=rtpmap:96 VP8/90000",
		"a=rtpmap:97 H264/90000",
		"m=audio 7078 RTP/AVP 0 101",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"m=application 5070 TCP/BFCP *",
		"a=setup:actpass",
	)
)

// offer builds a one-stream offer with the session c= and the m= line and
// media attributes given.
func offer(conn, mline string, attrs ...string) string {
	lines := []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-"}
	if conn != "" {
		lines = append(lines, "c="+conn)
	}
	lines = append(lines, "t=0 0", mline)
	return crlf(append(lines, attrs...)...)
}

func TestAnswerOffer(t *testing.T) {
	local := netip.MustParseAddrPort("198.51.100.7:20000")
	tests := []struct {
		name    string
		offer   string
		codec   string // "" when refused
		target  string
		audioAt int   // index of the answered audio m-line
		wantErr error // sentinel when refused
	}{
		{name: "linphone opus first, PCMU before PCMA", offer: linphoneOffer, codec: "PCMU", target: "192.168.1.20:7078"},
		{name: "zoiper G.722 first, PCMU before PCMA", offer: zoiperOffer, codec: "PCMU", target: "10.0.0.5:52000"},
		{name: "asterisk PCMA first", offer: asteriskPCMAFirst, codec: "PCMA", target: "203.0.113.10:12034"},
		{name: "video then audio", offer: videoThenAudio, codec: "PCMU", target: "192.0.2.33:7078", audioAt: 1},
		{name: "static types without rtpmap", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 8 0"), codec: "PCMA", target: "192.0.2.9:4000"},
		{name: "media c= overrides session c=",
			offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.77"), codec: "PCMU", target: "192.0.2.77:4000"},
		{name: "media c= without session c=",
			offer: offer("", "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.78"), codec: "PCMU", target: "192.0.2.78:4000"},
		{name: "IPv6 caller", offer: offer("IN IP6 2001:db8::5", "m=audio 4002 RTP/AVP 0 8"), codec: "PCMU", target: "[2001:db8::5]:4002"},
		{name: "recvonly caller can hear us", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0", "a=recvonly"), codec: "PCMU", target: "192.0.2.9:4000"},
		{name: "media sendrecv overrides session sendonly",
			offer: strings.Replace(offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0", "a=sendrecv"), "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n", 1),
			codec: "PCMU", target: "192.0.2.9:4000"},
		{name: "rtpmap redefining 0 skips it", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0 8", "a=rtpmap:0 G722/8000"), codec: "PCMA", target: "192.0.2.9:4000"},
		{name: "SAVP stream skipped for a later AVP one",
			offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/SAVP 0", "m=audio 4002 RTP/AVP 8"), codec: "PCMA", target: "192.0.2.9:4002", audioAt: 1},
		{name: "LF line endings", offer: strings.ReplaceAll(asteriskPCMAFirst, "\r\n", "\n"), codec: "PCMA", target: "203.0.113.10:12034"},

		{name: "no SDP (late offer)", offer: "", wantErr: ErrNoOffer},
		{name: "blank body", offer: "\r\n", wantErr: ErrNoOffer},
		{name: "garbage", offer: "hello, this is not SDP", wantErr: ErrBadOffer},
		{name: "header only", offer: "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n", wantErr: ErrNoAudio},
		{name: "T.38 fax only (pion does not parse m=image)", offer: offer("IN IP4 192.0.2.9", "m=image 4000 udptl t38"), wantErr: ErrBadOffer},
		{name: "G.722 and Opus only",
			offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 9 111", "a=rtpmap:9 G722/8000", "a=rtpmap:111 opus/48000/2"), wantErr: ErrNoCodec},
		{name: "PCMU on a dynamic number only", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 96", "a=rtpmap:96 PCMU/8000"), wantErr: ErrNoCodec},
		{name: "video only", offer: offer("IN IP4 192.0.2.9", "m=video 4000 RTP/AVP 96", "a=rtpmap:96 VP8/90000"), wantErr: ErrNoAudio},
		{name: "audio port 0", offer: offer("IN IP4 192.0.2.9", "m=audio 0 RTP/AVP 0 8"), wantErr: ErrNoAudio},
		{name: "SRTP only", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/SAVP 0 8"), wantErr: ErrNoAudio},
		{name: "AVPF only", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVPF 0 8"), wantErr: ErrNoAudio},
		{name: "hold 0.0.0.0", offer: offer("IN IP4 0.0.0.0", "m=audio 4000 RTP/AVP 0 8"), wantErr: ErrHold},
		{name: "hold ::", offer: offer("IN IP6 ::", "m=audio 4000 RTP/AVP 0 8"), wantErr: ErrHold},
		{name: "a=sendonly", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0 8", "a=sendonly"), wantErr: ErrHold},
		{name: "a=inactive", offer: offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0 8", "a=inactive"), wantErr: ErrHold},
		{name: "session a=inactive",
			offer:   strings.Replace(offer("IN IP4 192.0.2.9", "m=audio 4000 RTP/AVP 0"), "t=0 0\r\n", "t=0 0\r\na=inactive\r\n", 1),
			wantErr: ErrHold},
		{name: "no c= anywhere", offer: offer("", "m=audio 4000 RTP/AVP 0"), wantErr: ErrBadOffer},
		{name: "c= host name", offer: offer("IN IP4 phone.example.com", "m=audio 4000 RTP/AVP 0"), wantErr: ErrBadOffer},
		{name: "c= IP4 with an IPv6 address", offer: offer("IN IP4 2001:db8::5", "m=audio 4000 RTP/AVP 0"), wantErr: ErrBadOffer},
		{name: "c= multicast", offer: offer("IN IP4 224.2.1.1/127", "m=audio 4000 RTP/AVP 0"), wantErr: ErrBadOffer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AnswerOffer([]byte(tt.offer), local, 7301)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("AnswerOffer error = %v, want %v", err, tt.wantErr)
				}
				if got.SDP != nil {
					t.Errorf("refused offer still returned an answer:\n%s", got.SDP)
				}
				return
			}
			if err != nil {
				t.Fatalf("AnswerOffer: %v", err)
			}
			if got.Codec.Name != tt.codec {
				t.Errorf("codec = %s, want %s", got.Codec.Name, tt.codec)
			}
			if want := netip.MustParseAddrPort(tt.target); got.Target != want {
				t.Errorf("target = %v, want %v", got.Target, want)
			}
			checkAnswer(t, tt.offer, got, local, 7301, tt.audioAt)
		})
	}
}

// checkAnswer parses the answer as the caller's phone would and checks it
// against RFC 3264 and what stirgate promises to send.
func checkAnswer(t *testing.T, offerText string, got Answer, local netip.AddrPort, sessionID uint64, audioAt int) {
	t.Helper()
	var off, ans sdp.SessionDescription
	if err := off.UnmarshalString(offerText); err != nil {
		t.Fatalf("offer does not parse: %v", err)
	}
	if err := ans.Unmarshal(got.SDP); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, got.SDP)
	}
	if !strings.HasPrefix(string(got.SDP), "v=0\r\n") {
		t.Errorf("answer does not start with v=0 CRLF:\n%s", got.SDP)
	}
	if ans.Origin.SessionID != sessionID || ans.Origin.NetworkType != "IN" || ans.Origin.UnicastAddress != local.Addr().String() {
		t.Errorf("o= %v, want session id %d from %v", ans.Origin, sessionID, local.Addr())
	}
	if ans.SessionName == "" {
		t.Error("answer has an empty s=")
	}
	if len(ans.TimeDescriptions) != 1 || ans.TimeDescriptions[0].Timing != (sdp.Timing{}) {
		t.Errorf("t= %v, want 0 0", ans.TimeDescriptions)
	}
	if c := ans.ConnectionInformation; c == nil || c.Address == nil || c.Address.Address != local.Addr().String() {
		t.Fatalf("session c= %v, want %v", c, local.Addr())
	}
	if len(ans.MediaDescriptions) != len(off.MediaDescriptions) {
		t.Fatalf("answer has %d m-lines, offer %d", len(ans.MediaDescriptions), len(off.MediaDescriptions))
	}
	for i, md := range ans.MediaDescriptions {
		if md.MediaName.Media != off.MediaDescriptions[i].MediaName.Media {
			t.Errorf("m-line %d is %s, offer has %s there", i, md.MediaName.Media, off.MediaDescriptions[i].MediaName.Media)
		}
		if i != audioAt {
			if md.MediaName.Port.Value != 0 {
				t.Errorf("m-line %d (%s) answered on port %d, want 0", i, md.MediaName.Media, md.MediaName.Port.Value)
			}
			continue
		}
		pt := strconv.Itoa(int(got.Codec.PayloadType))
		if md.MediaName.Port.Value != int(local.Port()) || strings.Join(md.MediaName.Protos, "/") != "RTP/AVP" ||
			len(md.MediaName.Formats) != 1 || md.MediaName.Formats[0] != pt {
			t.Errorf("audio m= %v, want audio %d RTP/AVP %s", md.MediaName, local.Port(), pt)
		}
		if v, _ := md.Attribute("rtpmap"); v != pt+" "+got.Codec.Name+"/8000" {
			t.Errorf("a=rtpmap:%s, want %s %s/8000", v, pt, got.Codec.Name)
		}
		if _, ok := md.Attribute("sendonly"); !ok {
			t.Error("audio stream lacks a=sendonly")
		}
		if v, _ := md.Attribute("ptime"); v != "20" {
			t.Errorf("a=ptime:%s, want 20", v)
		}
	}
	if c, err := ans.GetCodecForPayloadType(got.Codec.PayloadType); err != nil || c.Name != got.Codec.Name || c.ClockRate != 8000 {
		t.Errorf("pion reads payload type %d as %v (%v)", got.Codec.PayloadType, c, err)
	}
}

func TestAnswerOfferIPv6Local(t *testing.T) {
	local := netip.MustParseAddrPort("[2001:db8::1]:20002")
	got, err := AnswerOffer([]byte(asteriskPCMAFirst), local, 1)
	if err != nil {
		t.Fatalf("AnswerOffer: %v", err)
	}
	var ans sdp.SessionDescription
	if err := ans.Unmarshal(got.SDP); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	if c := ans.ConnectionInformation; c.AddressType != "IP6" || c.Address.Address != "2001:db8::1" {
		t.Errorf("c= %v, want IN IP6 2001:db8::1", c)
	}
	checkAnswer(t, asteriskPCMAFirst, got, local, 1, 0)
}

func TestAnswerOfferBadLocal(t *testing.T) {
	for _, local := range []netip.AddrPort{{}, netip.MustParseAddrPort("0.0.0.0:20000"), netip.MustParseAddrPort("198.51.100.7:0")} {
		if got, err := AnswerOffer([]byte(asteriskPCMAFirst), local, 1); err == nil {
			t.Errorf("local %v: answered %s, want an error", local, got.SDP)
		}
	}
}

// FuzzAnswerOffer: any bytes give a clear answer or a typed refusal, never
// a panic, and a success is always something stirgate can stream to.
func FuzzAnswerOffer(f *testing.F) {
	for _, s := range []string{
		linphoneOffer, zoiperOffer, asteriskPCMAFirst, videoThenAudio, "",
		offer("IN IP4 0.0.0.0", "m=audio 4000 RTP/AVP 0 8"),
		offer("IN IP6 2001:db8::5", "m=audio 4002 RTP/AVP 8", "a=rtpmap:8 PCMA/8000", "c=IN IP4 192.0.2.1"),
		offer("IN IP4 192.0.2.9", "m=audio 4000/2 RTP/AVP 0", "a=sendonly"),
	} {
		f.Add([]byte(s))
	}
	local := netip.MustParseAddrPort("198.51.100.7:20000")
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := AnswerOffer(data, local, 99)
		if err != nil {
			for _, known := range []error{ErrNoOffer, ErrBadOffer, ErrNoAudio, ErrNoCodec, ErrHold} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("untyped refusal %v", err)
		}
		if !(got.Codec.Name == "PCMU" && got.Codec.PayloadType == 0) && !(got.Codec.Name == "PCMA" && got.Codec.PayloadType == 8) {
			t.Fatalf("codec %s/%d", got.Codec.Name, got.Codec.PayloadType)
		}
		a := got.Target.Addr()
		if !got.Target.IsValid() || got.Target.Port() == 0 || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			t.Fatalf("target %v is not a unicast address and port", got.Target)
		}
		var ans sdp.SessionDescription
		if err := ans.Unmarshal(got.SDP); err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, got.SDP)
		}
		var off sdp.SessionDescription
		if err := off.Unmarshal(data); err != nil {
			t.Fatalf("accepted an offer pion does not parse: %v", err)
		}
		if len(ans.MediaDescriptions) != len(off.MediaDescriptions) {
			t.Fatalf("answer has %d m-lines, offer %d", len(ans.MediaDescriptions), len(off.MediaDescriptions))
		}
	})
}
