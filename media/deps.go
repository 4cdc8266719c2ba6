package media

// The libraries the rest of issue 15 builds on, pinned here until their
// first users land: pion/rtp for RTP packets, pion/sdp for the offer and
// the answer.
import (
	_ "github.com/pion/rtp"
	_ "github.com/pion/sdp/v3"
)
