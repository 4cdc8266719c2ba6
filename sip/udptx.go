package sip

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The UDP transaction layer (RFC 3261 17) stirgate keeps itself. sipgo's
// runs a goroutine per message and an FSM with its own timers per
// transaction; under load that hand-off was most of the proxy's CPU
// (sip/README.md). Here the socket reader matches a response, an ACK, a
// CANCEL or a retransmission to its transaction in a sharded map and
// handles it in place; only a new request starts a goroutine. Timers that
// only end a transaction (D, I, J, K, L, M) are FIFO queues swept by one
// goroutine; retransmission timers (A, E, G) are runtime timers, created
// only until the first answer.

// serverTx is the upstream side of one request, as the proxy core uses it:
// sipgo's server transaction (TCP) or stirgate's (UDP).
type serverTx interface {
	Respond(*sip.Response) error
	OnCancel(sip.FnTxCancel) bool
	OnTerminate(sip.FnTxTerminate) bool
}

// clientTx is the downstream side of one forwarded request: sipgo's client
// transaction (TCP) or stirgate's (UDP).
type clientTx interface {
	Responses() <-chan *sip.Response
	Done() <-chan struct{}
	Err() error
	OnRetransmission(sip.FnTxResponse) bool
	Terminate()
}

var errTxEnded = errors.New("transaction ended")

// txState is where a transaction is in its RFC 3261 17 state machine.
type txState uint8

const (
	txTrying     txState = iota // client: calling/trying; server: no answer yet
	txProceeding                // a provisional response
	txCompleted                 // a non-2xx final (INVITE) or any final (non-INVITE)
	txConfirmed                 // server INVITE: the ACK of its non-2xx arrived
	txAccepted                  // INVITE answered 2xx (RFC 6026)
	txTerminated
)

// txMap is a sharded map of transactions by key: the socket readers and
// the request goroutines look transactions up concurrently.
type txMap[T comparable] struct {
	shards [64]txShard[T]
}

type txShard[T comparable] struct {
	sync.Mutex
	m map[string]T
}

var txSeed = maphash.MakeSeed()

func newTxMap[T comparable]() *txMap[T] {
	t := &txMap[T]{}
	for i := range t.shards {
		t.shards[i].m = make(map[string]T)
	}
	return t
}

func (t *txMap[T]) shard(key string) *txShard[T] {
	return &t.shards[maphash.String(txSeed, key)&63]
}

func (t *txMap[T]) get(key string) (T, bool) {
	s := t.shard(key)
	s.Lock()
	v, ok := s.m[key]
	s.Unlock()
	return v, ok
}

// add stores v under key unless the key is taken; it returns the one stored.
func (t *txMap[T]) add(key string, v T) (T, bool) {
	s := t.shard(key)
	s.Lock()
	defer s.Unlock()
	if old, ok := s.m[key]; ok {
		return old, false
	}
	s.m[key] = v
	return v, true
}

// remove deletes key if it still holds v.
func (t *txMap[T]) remove(key string, v T) {
	s := t.shard(key)
	s.Lock()
	if s.m[key] == v {
		delete(s.m, key)
	}
	s.Unlock()
}

// lingerQueue ends transactions a fixed time after they were queued. One
// duration per queue keeps it in deadline order: expiring is popping.
type lingerQueue struct {
	d     time.Duration
	mu    sync.Mutex
	items []lingering
	head  int
}

type lingering struct {
	at time.Time
	tx ender
}

// ender is a transaction a linger ends (a pointer: queueing it does not
// allocate, as a method value would).
type ender interface{ end() }

func (q *lingerQueue) add(tx ender) {
	q.mu.Lock()
	q.items = append(q.items, lingering{at: time.Now().Add(q.d), tx: tx})
	q.mu.Unlock()
}

// expire ends the transactions due at now, outside the lock.
func (q *lingerQueue) expire(now time.Time) {
	q.mu.Lock()
	var due []ender
	for q.head < len(q.items) && !q.items[q.head].at.After(now) {
		due = append(due, q.items[q.head].tx)
		q.items[q.head] = lingering{}
		q.head++
	}
	if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	q.mu.Unlock()
	for _, tx := range due {
		tx.end()
	}
}

// udpTxLayer is the transaction table of every UDP socket of an edge.
type udpTxLayer struct {
	e *Edge
	// servers by realm: the same request sent to both realms is two
	// transactions, as it would be at two proxies.
	servers [2]*txMap[*udpServerTx]
	clients *txMap[*udpClientTx]
	// Lingers: completed (timers D, J: sip.transaction_linger), answered
	// 2xx (timers L, M: at most 1 s) and short (timers I, K: T4).
	linger, accepted, short *lingerQueue
	// t1 and t2 are RFC 3261's T1 and T2 (timers A, B, E, F, G, H).
	t1, t2 time.Duration
}

func newUDPTxLayer(e *Edge) *udpTxLayer {
	l := &udpTxLayer{e: e, servers: [2]*txMap[*udpServerTx]{newTxMap[*udpServerTx](), newTxMap[*udpServerTx]()}, clients: newTxMap[*udpClientTx]()}
	l.setTimers(sip.T1, sip.T2, sip.T4)
	return l
}

// setTimers sets T1, T2 and T4; only before the layer is used (tests).
func (l *udpTxLayer) setTimers(t1, t2, t4 time.Duration) {
	l.t1, l.t2 = t1, t2
	l.linger = &lingerQueue{d: l.e.static.linger}
	l.accepted = &lingerQueue{d: min(l.e.static.linger, acceptedLinger)}
	l.short = &lingerQueue{d: t4}
}

// sweep ends lingering transactions until done is closed.
func (l *udpTxLayer) sweep(done <-chan struct{}) {
	every(50*time.Millisecond, done, func(now time.Time) {
		l.linger.expire(now)
		l.accepted.expire(now)
		l.short.expire(now)
	})
}

// every calls fn with the time every d until done is closed.
func every(d time.Duration, done <-chan struct{}, fn func(now time.Time)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// serverKey identifies the server transaction of a request (RFC 3261
// 17.2.3): the top Via's branch and sent-by and the method, ACK and CANCEL
// matching as INVITE when asInvite. A branch without the RFC 3261 cookie
// falls back to the RFC 2543 fields.
func serverKey(req *sip.Request, asInvite bool) (string, error) {
	via, cseq := req.Via(), req.CSeq()
	if via == nil || cseq == nil {
		return "", errors.New("no Via or CSeq")
	}
	method := string(cseq.MethodName)
	if asInvite || cseq.MethodName == sip.ACK {
		method = string(sip.INVITE)
	}
	port := via.Port
	if port <= 0 {
		port = 5060
	}
	var b strings.Builder
	branch, _ := via.Params.Get("branch")
	if strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) && len(branch) > len(sip.RFC3261BranchMagicCookie) {
		b.Grow(len(branch) + len(via.Host) + len(method) + 8)
		b.WriteString(branch)
	} else {
		from := req.From()
		if from == nil || req.CallID() == nil {
			return "", errors.New("no From or Call-ID")
		}
		tag, _ := from.Params.Get("tag")
		b.WriteString("2543|")
		b.WriteString(req.CallID().Value())
		b.WriteByte('|')
		b.WriteString(tag)
		b.WriteByte('|')
		b.WriteString(strconv.FormatUint(uint64(cseq.SeqNo), 10))
	}
	b.WriteByte('|')
	b.WriteString(via.Host)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(port))
	b.WriteByte('|')
	b.WriteString(method)
	return b.String(), nil
}

// clientKey identifies the client transaction of a response: our branch
// and the CSeq method (RFC 3261 17.1.3).
func clientKey(branch string, method sip.RequestMethod) string {
	return branch + "|" + string(method)
}

// open starts the server transaction key for req, which arrived in realm r
// from src; a retransmission of a request it already holds gets that
// transaction's last response again, and open returns nil.
func (l *udpTxLayer) open(r *realm, conn *net.UDPConn, src netip.AddrPort, req *sip.Request, key string) *udpServerTx {
	tx := &udpServerTx{l: l, realm: r.idx, key: key, conn: conn, src: src, req: req, invite: req.IsInvite()}
	if old, added := l.servers[r.idx].add(key, tx); !added {
		old.retransmission()
		return nil
	}
	return tx
}

// udpServerTx is a server transaction over UDP.
type udpServerTx struct {
	l      *udpTxLayer
	realm  int
	key    string
	conn   *net.UDPConn
	src    netip.AddrPort
	req    *sip.Request
	invite bool

	mu          sync.Mutex
	state       txState
	last        []byte         // the last response sent, for retransmissions
	lastTo      netip.AddrPort // and where it went
	timerG      *time.Timer    // retransmits a non-2xx final until its ACK (G, H)
	interval    time.Duration
	finalAt     time.Time
	cancelled   *sip.Request
	earlyTag    string // the To tag of the last 18x sent: the 487 keeps it
	onCancel    sip.FnTxCancel
	onTerminate []sip.FnTxTerminate
}

func (tx *udpServerTx) Respond(res *sip.Response) error {
	to := tx.src
	if d := res.Destination(); d != "" {
		if ap, err := netip.ParseAddrPort(d); err == nil {
			to = ap
		}
	}
	wire := wireOf(res)
	tx.mu.Lock()
	switch {
	case tx.state == txAccepted && res.IsSuccess():
		// a retransmitted 2xx relayed from downstream (RFC 6026)
	case tx.state >= txCompleted:
		tx.mu.Unlock()
		return fmt.Errorf("respond %d: %w", res.StatusCode, errTxEnded)
	case res.StatusCode < 200:
		tx.state = txProceeding
		if to := res.To(); to != nil && res.StatusCode > 100 {
			if tag, ok := to.Params.Get("tag"); ok {
				tx.earlyTag = tag
			}
		}
	case tx.invite && res.IsSuccess():
		tx.state = txAccepted
		tx.l.accepted.add(tx)
	case tx.invite:
		tx.state = txCompleted
		tx.finalAt = time.Now()
		tx.interval = tx.l.t1
		tx.timerG = time.AfterFunc(tx.interval, tx.retransmitFinal)
	default:
		tx.state = txCompleted
		tx.l.linger.add(tx)
	}
	tx.last, tx.lastTo = wire, to
	if res.StatusCode >= 200 {
		tx.req = nil // only a CANCEL before the final needs it: free it for the linger
	}
	tx.mu.Unlock()
	return writeUDP(tx.conn, wire, to)
}

// retransmitFinal is timers G and H: the non-2xx final again, at doubling
// intervals up to T2, until its ACK or 64*T1.
func (tx *udpServerTx) retransmitFinal() {
	tx.mu.Lock()
	if tx.state != txCompleted {
		tx.mu.Unlock()
		return
	}
	if time.Since(tx.finalAt) >= 64*tx.l.t1 {
		tx.mu.Unlock()
		tx.end()
		return
	}
	wire, to := tx.last, tx.lastTo
	tx.interval = min(2*tx.interval, tx.l.t2)
	tx.timerG.Reset(tx.interval)
	tx.mu.Unlock()
	_ = writeUDP(tx.conn, wire, to)
}

// retransmission answers a retransmitted request with the last response.
func (tx *udpServerTx) retransmission() {
	tx.mu.Lock()
	wire, to := tx.last, tx.lastTo
	if tx.state == txAccepted || tx.state == txTerminated {
		wire = nil // RFC 6026: the UAS core retransmits its 2xx itself
	}
	tx.mu.Unlock()
	if wire != nil {
		_ = writeUDP(tx.conn, wire, to)
	}
}

// ack takes the ACK of a non-2xx final: retransmissions stop, and the
// transaction absorbs further ACKs for T4 (timer I).
func (tx *udpServerTx) ack() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != txCompleted {
		return
	}
	tx.state = txConfirmed
	if tx.timerG != nil {
		tx.timerG.Stop()
	}
	tx.l.short.add(tx)
}

// cancel handles a CANCEL that matched this INVITE unless a final response
// went already: the proxy's cancel callback, then 487.
func (tx *udpServerTx) cancel(c *sip.Request) {
	tx.mu.Lock()
	answered := tx.state >= txCompleted || tx.cancelled != nil
	if !answered {
		tx.cancelled = c
	}
	f, req, tag := tx.onCancel, tx.req, tx.earlyTag
	tx.mu.Unlock()
	if answered {
		return
	}
	if f != nil {
		f(c) // first: an announcement stops before its 487 leaves
	}
	res := tx.l.e.newResponse(req, 487, "Request Terminated")
	if tag != "" {
		// The 487 ends the early dialog of the last 18x (RFC 3261 8.2.6.2:
		// one To tag for every response of the request).
		res.To().Params.Add("tag", tag)
	}
	_ = tx.Respond(res)
}

// wasCancelled reports whether a CANCEL has ended this INVITE.
func (tx *udpServerTx) wasCancelled() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.cancelled != nil
}

// OnCancel registers f for a CANCEL of this INVITE; one that came already
// runs f at once.
func (tx *udpServerTx) OnCancel(f sip.FnTxCancel) bool {
	tx.mu.Lock()
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return false
	}
	tx.onCancel = f
	c := tx.cancelled
	tx.mu.Unlock()
	if c != nil {
		f(c)
	}
	return true
}

func (tx *udpServerTx) OnTerminate(f sip.FnTxTerminate) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state == txTerminated {
		return false
	}
	tx.onTerminate = append(tx.onTerminate, f)
	return true
}

// handled is called when the proxy core is done with the request: one it
// never answered (a dropped retransmission) lingers to absorb the rest.
func (tx *udpServerTx) handled() {
	tx.mu.Lock()
	if tx.state < txCompleted {
		tx.state = txCompleted
		tx.last = nil
		tx.l.linger.add(tx)
	}
	tx.mu.Unlock()
}

// end removes the transaction from the table and runs its OnTerminate
// callbacks.
func (tx *udpServerTx) end() {
	tx.mu.Lock()
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return
	}
	tx.state = txTerminated
	if tx.timerG != nil {
		tx.timerG.Stop()
	}
	fs := tx.onTerminate
	tx.onTerminate = nil
	tx.mu.Unlock()
	tx.l.servers[tx.realm].remove(tx.key, tx)
	for _, f := range fs {
		f(tx.key, nil)
	}
}

// udpClientTx is a client transaction over UDP: a request stirgate sends.
type udpClientTx struct {
	l         *udpTxLayer
	key       string
	conn      *net.UDPConn
	to        netip.AddrPort
	req       *sip.Request
	invite    bool
	responses chan *sip.Response
	done      chan struct{}

	mu        sync.Mutex
	state     txState
	wire      []byte      // the request, for retransmissions
	ackWire   []byte      // the ACK of a non-2xx final, for its retransmissions
	timer     *time.Timer // A and B, or E and F
	interval  time.Duration
	started   time.Time
	onRetrans sip.FnTxResponse
	err       error
}

// request starts a client transaction for req, which leaves realm out over
// UDP to req's destination.
func (l *udpTxLayer) request(out *realm, req *sip.Request) (*udpClientTx, error) {
	via := req.Via()
	if via == nil {
		return nil, errors.New("request without Via")
	}
	branch, _ := via.Params.Get("branch")
	to, err := resolveUDP(req.Destination())
	if err != nil {
		return nil, err
	}
	conn := out.udpConn()
	if conn == nil {
		return nil, fmt.Errorf("realm %s has no UDP listener", out.name)
	}
	tx := &udpClientTx{
		l: l, key: clientKey(branch, req.Method), conn: conn, to: to, req: req, invite: req.IsInvite(),
		responses: make(chan *sip.Response, 8), done: make(chan struct{}),
		wire: wireOf(req), interval: l.t1, started: time.Now(),
	}
	tx.mu.Lock() // held until the timer is set: a response waits for it
	defer tx.mu.Unlock()
	if _, ok := l.clients.add(tx.key, tx); !ok {
		return nil, fmt.Errorf("branch %s already in use", branch)
	}
	if err := writeUDP(conn, tx.wire, to); err != nil {
		l.clients.remove(tx.key, tx)
		return nil, err
	}
	tx.timer = time.AfterFunc(tx.interval, tx.retransmit)
	return tx, nil
}

// retransmit is timers A and B (INVITE) or E and F (non-INVITE).
func (tx *udpClientTx) retransmit() {
	tx.mu.Lock()
	if tx.state >= txCompleted || (tx.invite && tx.state == txProceeding) {
		tx.mu.Unlock()
		return
	}
	left := 64*tx.l.t1 - time.Since(tx.started)
	if left <= 0 {
		tx.mu.Unlock()
		timer := "F"
		if tx.invite {
			timer = "B"
		}
		tx.terminate(fmt.Errorf("timer %s fired: %w", timer, sip.ErrTransactionTimeout))
		return
	}
	if tx.invite {
		tx.interval *= 2
	} else if tx.state == txProceeding {
		tx.interval = tx.l.t2
	} else {
		tx.interval = min(2*tx.interval, tx.l.t2)
	}
	tx.timer.Reset(min(tx.interval, left))
	wire := tx.wire
	tx.mu.Unlock()
	_ = writeUDP(tx.conn, wire, tx.to)
}

// receive takes a response to this transaction, in the socket reader.
func (tx *udpClientTx) receive(res *sip.Response) {
	tx.mu.Lock()
	switch tx.state {
	case txTrying, txProceeding:
		if res.StatusCode < 200 {
			tx.state = txProceeding
			if tx.invite {
				tx.timer.Stop()
			}
			// Room is kept for the final response: a provisional that
			// finds the queue nearly full is dropped, never the final.
			if len(tx.responses) < cap(tx.responses)-1 {
				tx.responses <- res
			}
			tx.mu.Unlock()
			return
		}
		tx.timer.Stop()
		tx.wire = nil // no more retransmissions: free it for the linger
		switch {
		case tx.invite && res.IsSuccess():
			tx.state = txAccepted
			tx.l.accepted.add(tx)
		case tx.invite:
			tx.state = txCompleted
			tx.ackWire = wireOf(ackFor(tx.req, res))
			tx.l.linger.add(tx)
		default:
			tx.state = txCompleted
			tx.l.short.add(tx)
		}
		tx.req = nil
		tx.responses <- res
		ack := tx.ackWire
		tx.mu.Unlock()
		if ack != nil {
			_ = writeUDP(tx.conn, ack, tx.to)
		}
	case txCompleted:
		ack := tx.ackWire
		tx.mu.Unlock()
		if ack != nil && res.StatusCode >= 300 {
			_ = writeUDP(tx.conn, ack, tx.to) // a retransmitted final: ACK again
		}
	case txAccepted:
		f := tx.onRetrans
		tx.mu.Unlock()
		if res.IsSuccess() && f != nil {
			f(res)
		}
	default:
		tx.mu.Unlock()
	}
}

// ackFor is the ACK of a non-2xx final response (RFC 3261 17.1.1.3): on
// the INVITE's hop, with the response's To.
func ackFor(req *sip.Request, res *sip.Response) *sip.Request {
	return sameHop(req, sip.ACK, res.To())
}

// sameHop is a request stirgate sends on the hop of req, within its
// transaction (the ACK of a non-2xx, a CANCEL; RFC 3261 9.1, 17.1.1.3):
// same Request-URI, top Via, Route, From, Call-ID and CSeq number, with
// to as its To.
func sameHop(req *sip.Request, method sip.RequestMethod, to *sip.ToHeader) *sip.Request {
	r := sip.NewRequest(method, *req.Recipient.Clone())
	r.SipVersion = req.SipVersion
	r.AppendHeader(req.Via().Clone())
	for _, h := range req.GetHeaders("Route") {
		r.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	if h := req.From(); h != nil {
		r.AppendHeader(sip.HeaderClone(h))
	}
	if to != nil {
		r.AppendHeader(sip.HeaderClone(to))
	}
	if h := req.CallID(); h != nil {
		r.AppendHeader(sip.HeaderClone(h))
	}
	r.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: method})
	r.SetBody(nil)
	return r
}

func (tx *udpClientTx) Responses() <-chan *sip.Response { return tx.responses }
func (tx *udpClientTx) Done() <-chan struct{}           { return tx.done }

func (tx *udpClientTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

func (tx *udpClientTx) OnRetransmission(f sip.FnTxResponse) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state == txTerminated {
		return false
	}
	tx.onRetrans = f
	return true
}

func (tx *udpClientTx) Terminate() { tx.terminate(sip.ErrTransactionTerminated) }

func (tx *udpClientTx) end() { tx.terminate(nil) }

func (tx *udpClientTx) terminate(err error) {
	tx.mu.Lock()
	if tx.state == txTerminated {
		tx.mu.Unlock()
		return
	}
	tx.state = txTerminated
	tx.err = err
	if tx.timer != nil {
		tx.timer.Stop()
	}
	tx.mu.Unlock()
	tx.l.clients.remove(tx.key, tx)
	close(tx.done)
}
