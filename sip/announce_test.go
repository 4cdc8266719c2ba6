package sip

import (
	"context"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"

	"github.com/stirgate/stirgate/sip/media"
)

// FuzzEdgeAnnounce: whatever body an INVITE rejected with an announcement
// carries, the caller gets exactly one final response, the rejection's; a
// 183 comes only with an SDP answer, and the final response keeps its To
// tag. The seeds (run by go test) are the offers the edge must play to or
// refuse.
//
//	go test ./sip -run '^$' -fuzz FuzzEdgeAnnounce -fuzztime 5m
func FuzzEdgeAnnounce(f *testing.F) {
	offer := func(c, m string) string {
		return "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 " + c + "\r\nt=0 0\r\n" + m + "\r\n"
	}
	// The seeds the edge must play to.
	playable := map[string]bool{
		offer("127.0.0.1", "m=audio 9 RTP/AVP 0 8"):                           true,
		offer("127.0.0.1", "m=audio 9 RTP/AVP 8\r\na=sendrecv\r\na=ptime:30"): true,
	}
	for body := range playable {
		f.Add(body)
	}
	f.Add(offer("127.0.0.1", "m=audio 9 RTP/AVP 9 111"))
	f.Add(offer("0.0.0.0", "m=audio 9 RTP/AVP 0"))
	f.Add("")
	f.Add("v=0\r\nnot sdp")

	// One 20 ms packet: the fuzzer does not wait for long streams.
	a, err := media.NewAnnouncement(media.SITNone, &media.Prompt{Name: "beep.wav", Samples: make([]int16, 160)}, 1)
	if err != nil {
		f.Fatal(err)
	}
	reject := HandlerFunc{StageName: "policy", Fn: func(context.Context, *Call) error {
		rej := Reject(603, "Decline", nil).(*Rejection)
		rej.Announce = a
		return rej
	}}
	e, _ := newTestEdge(f, testConfig(), Chains{Inside: Chain{reject}})
	n := 0
	f.Fuzz(func(t *testing.T, body string) {
		n++
		raw := "INVITE sip:+12025550100@127.0.0.1:5070 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-ann-" + strconv.Itoa(n) + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:+12025550199@pbx.example>;tag=a\r\nTo: <sip:+12025550100@example.net>\r\n" +
			"Call-ID: ann-" + strconv.Itoa(n) + "@test\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		msg, err := sip.NewParser().ParseSIP([]byte(raw))
		if err != nil {
			return
		}
		req := msg.(*sip.Request)
		req.SetSource("127.0.0.1:5090")
		req.SetTransport("UDP")
		tx := siptest.NewServerTxRecorder(req)
		e.serve(e.realms[inside], req, tx)
		var progress, final *sip.Response
		for _, r := range tx.Result() {
			switch {
			case r.StatusCode == 183:
				progress = r
			case r.StatusCode >= 200:
				if final != nil {
					t.Fatalf("two final responses: %d and %d", final.StatusCode, r.StatusCode)
				}
				final = r
			}
		}
		if final == nil || final.StatusCode != 603 {
			t.Fatalf("final response %v, want 603", final)
		}
		if playable[body] && progress == nil {
			t.Fatalf("a playable offer got no 183:\n%s", body)
		}
		if progress == nil {
			return
		}
		if ct := progress.ContentType(); ct == nil || ct.Value() != "application/sdp" || len(progress.Body()) == 0 {
			t.Fatalf("183 without an SDP answer")
		}
		t1, _ := progress.To().Params.Get("tag")
		t2, _ := final.To().Params.Get("tag")
		if t1 == "" || t1 != t2 {
			t.Fatalf("To tags: 183 %q, 603 %q", t1, t2)
		}
	})
}
