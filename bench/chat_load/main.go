// bench/chat_load: the load generator of the chat rows of `make bench` (workload C1).
//
//	chat_load -server 'lua5.4 examples/chat/server.lua --port {port} --rate 0'
//	chat_load -server 'chatgo serve --port {port} --rate 0'
//
// Starts the server (through sh; {port} becomes a free port on 127.0.0.1), waits until
// it accepts connections, connects the clients (default 1,000), each sends `/nick c<i>`
// and `/join room<i mod rooms>`, and once every client is in its room each sends a line
// `m <ns> <padding>` every 100 ms (-interval), staggered over the 100 ms; <ns> is the
// send time on this process's monotonic clock, so each receiver measures the delivery
// latency of each message it gets. After a warm-up (default 2 s) it counts, for a window
// (default 8 s; both times BENCH_SCALE, at least 0.5 s and 1 s), the messages delivered
// (received by a client) and their latencies, then stops sending, sends the server SIGTERM
// and reads until every connection has ended (SIGKILL after 10 s). The protocol is
// bench/chat_load/PROTOCOL.md. All the clients are one epoll loop on one thread
// (GOMAXPROCS=1), so the generator takes one core and leaves the other to the server.
//
// Prints `RESULT <key> <number>`, `NOTE <text>` and `INFO <text>` lines for bench/run.lua:
// msgs_per_s (deliveries a second), p50_ms, p99_ms, p999_ms, max_ms (delivery latency),
// sent_per_s, of_offered (deliveries over what the sent lines should have produced:
// sent x (room members - 1)), server_cpu and load_cpu (CPU time over wall time in the
// window, 1 = one core busy), server_rss_mb, disconnects (connections that ended before
// the window did), setup_s, shutdown_s. Standard library only: bench/run.sh builds it with
// GOPROXY=off. Linux only (epoll, /proc).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/bits"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ---------------------------------------------------------------- latency histogram
// Log-linear buckets over microseconds: exact below 64 us, then 32 buckets per power of
// two (at most 1/32, about 3%, wide).
const nBuckets = 1024

func bucket(us uint64) int {
	if us < 64 {
		return int(us)
	}
	shift := bits.Len64(us) - 6
	i := (shift+1)*32 + int(us>>uint(shift)) - 32
	if i >= nBuckets {
		i = nBuckets - 1
	}
	return i
}

// bucketMid is the middle of bucket i, in microseconds.
func bucketMid(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	shift := i/32 - 1
	lo := uint64(i%32+32) << uint(shift)
	return float64(lo) + float64(uint64(1)<<uint(shift))/2
}

type hist [nBuckets]uint64

func (h *hist) quantile(q float64) float64 {
	var total uint64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return math.NaN()
	}
	want := uint64(math.Ceil(q * float64(total)))
	if want < 1 {
		want = 1
	}
	var seen uint64
	for i, n := range h {
		seen += n
		if seen >= want {
			return bucketMid(i)
		}
	}
	return bucketMid(nBuckets - 1)
}

// ---------------------------------------------------------------- clients
// All clients live in one event loop on one OS thread: non-blocking sockets in an epoll
// set (level-triggered), one read per ready socket per round into a shared buffer, and the
// sends due, stamped as they are written. The time is read once per read, for all the
// lines it brings. This costs the generator as little as the kernel allows per read, so
// that it keeps up with a server that writes one line at a time.
var base = time.Now()

func now() int64 { return int64(time.Since(base)) } // monotonic ns

type client struct {
	id        int
	fd        int
	room      []byte
	joined    bool
	closed    bool
	partial   []byte // the start of a line not yet complete
	pending   []byte // what a send could not write yet
	hist      hist
	delivered uint64 // in the window
	sent      uint64 // lines sent in the window
	notices   uint64
	other     uint64 // lines neither notice nor parsable message
	slowNote  uint64 // "* too slow" / "* slow down" notices
	ended     int64  // when the connection ended (0: open)
	next      int64  // when its next line is due (ns on base)
}

type loop struct {
	epfd            int
	clients         []*client
	byFd            map[int]*client
	buf             []byte
	events          []syscall.EpollEvent
	ws, we          int64 // the window (ns on base); 0 until the load starts
	joinedN, closed int
	blocked         uint64 // sends that found the socket full
}

func newLoop(n int) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &loop{epfd: epfd, clients: make([]*client, 0, n), byFd: map[int]*client{},
		buf: make([]byte, 256*1024), events: make([]syscall.EpollEvent, 256)}, nil
}

func (l *loop) connect(id int, room string, port int) (*client, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) // as Go's net does
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	c := &client{id: id, fd: fd, room: []byte(room)}
	l.clients = append(l.clients, c)
	l.byFd[fd] = c
	return c, l.write(c, []byte(fmt.Sprintf("/nick c%d\n/join %s\n", id, room)))
}

// write writes b, or keeps what the socket does not take for the next try.
func (l *loop) write(c *client, b []byte) error {
	if c.closed {
		return nil
	}
	if len(c.pending) > 0 {
		n, err := syscall.Write(c.fd, c.pending)
		if n > 0 {
			c.pending = c.pending[n:]
		}
		if err != nil && err != syscall.EAGAIN {
			return err
		}
		if len(c.pending) > 0 {
			l.blocked++
			c.pending = append(c.pending, b...)
			return nil
		}
	}
	n, err := syscall.Write(c.fd, b)
	if n < 0 {
		n = 0
	}
	if err != nil && err != syscall.EAGAIN {
		return err
	}
	if n < len(b) {
		l.blocked++
		c.pending = append(c.pending, b[n:]...)
	}
	return nil
}

func (l *loop) end(c *client) {
	if c.closed {
		return
	}
	c.closed, c.ended = true, now()
	l.closed++
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
}

var (
	notice   = []byte("* ")
	tooSlow  = []byte("* too slow")
	slowDown = []byte("* slow down")
	msgHead  = []byte(": m ")
)

func (l *loop) line(c *client, line []byte, t int64) {
	if len(line) >= 2 && line[0] == '*' && line[1] == ' ' {
		c.notices++
		if bytes.HasPrefix(line, tooSlow) || bytes.HasPrefix(line, slowDown) {
			c.slowNote++
		}
		if !c.joined && bytes.Contains(line, c.room) {
			c.joined = true
			l.joinedN++
		}
		return
	}
	i := bytes.Index(line, msgHead)
	if i < 0 {
		c.other++
		return
	}
	if l.ws == 0 || t < l.ws || t >= l.we {
		return
	}
	var sentAt int64
	for j := i + 4; j < len(line) && line[j] >= '0' && line[j] <= '9'; j++ {
		sentAt = sentAt*10 + int64(line[j]-'0')
	}
	lat := t - sentAt
	if lat < 0 {
		lat = 0
	}
	c.hist[bucket(uint64(lat/1000))]++
	c.delivered++
}

// read reads once from c and handles the complete lines.
func (l *loop) read(c *client) {
	n, err := syscall.Read(c.fd, l.buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		l.end(c)
		return
	}
	t := now()
	data := l.buf[:n]
	if len(c.partial) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			c.partial = append(c.partial, data...)
			if len(c.partial) > 1<<20 {
				c.other++
				c.partial = c.partial[:0]
			}
			return
		}
		c.partial = append(c.partial, data[:i+1]...)
		l.line(c, c.partial, t)
		c.partial = c.partial[:0]
		data = data[i+1:]
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			c.partial = append(c.partial, data...)
			break
		}
		l.line(c, data[:i+1], t)
		data = data[i+1:]
	}
}

// poll waits for readiness at most ms milliseconds and reads what is ready.
func (l *loop) poll(ms int) {
	n, err := syscall.EpollWait(l.epfd, l.events, ms)
	if err != nil {
		return // EINTR
	}
	for _, ev := range l.events[:n] {
		if c := l.byFd[int(ev.Fd)]; c != nil && !c.closed {
			l.read(c)
		}
	}
}

// ---------------------------------------------------------------- the server process
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startServer(cmdline string) (*server, error) {
	cmd := exec.Command("sh", "-c", "exec "+cmdline)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	return s, nil
}

func (s *server) signal(sig syscall.Signal) { syscall.Kill(-s.cmd.Process.Pid, sig) }

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// cpuSeconds is the server's user+system time so far, from /proc (0 when unreadable).
func (s *server) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ
}

func (s *server) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return math.NaN()
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ---------------------------------------------------------------- main
func result(k string, v float64) { fmt.Printf("RESULT %s %.6g\n", k, v) }

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "chat_load: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	serverCmd := flag.String("server", "", "server command line; {port} is replaced by the port")
	nClients := flag.Int("clients", 1000, "concurrent clients")
	nRooms := flag.Int("rooms", 10, "rooms (client i joins room<i mod rooms>)")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between two messages of one client")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up before the window (times BENCH_SCALE, at least 0.5 s)")
	measure := flag.Duration("measure", 8*time.Second, "the measuring window (times BENCH_SCALE, at least 1 s)")
	textLen := flag.Int("len", 48, "length of a message's text (the \"m <ns> \" head and padding)")
	flag.Parse()
	if *serverCmd == "" {
		fmt.Fprintln(os.Stderr, "usage: chat_load -server 'CMD --port {port}' [-clients 1000] [-rooms 10] [-interval 100ms] [-warmup 2s] [-measure 8s] [-len 48]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1) // one core for the generator, the other for the server
	if s, err := strconv.ParseFloat(os.Getenv("BENCH_SCALE"), 64); err == nil && s > 0 {
		*warmup = time.Duration(math.Max(float64(*warmup)*s, float64(500*time.Millisecond)))
		*measure = time.Duration(math.Max(float64(*measure)*s, float64(time.Second)))
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(*nClients)+64 {
		fail("the open files limit (ulimit -n) is %d; %d clients need more", lim.Cur, *nClients)
	}

	port, err := freePort()
	if err != nil {
		fail("no free port: %v", err)
	}
	cmdline := strings.ReplaceAll(*serverCmd, "{port}", strconv.Itoa(port))
	srv, err := startServer(cmdline)
	if err != nil {
		fail("cannot start the server: %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		srv.signal(syscall.SIGKILL)
		fail("stopped by %v", sig)
	}()
	defer srv.signal(syscall.SIGKILL)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if srv.exited() {
			fail("the server exited before accepting connections (%v): %s", srv.err, cmdline)
		}
		if time.Now().After(deadline) {
			srv.signal(syscall.SIGKILL)
			fail("the server did not accept connections within 15 s: %s", cmdline)
		}
		time.Sleep(20 * time.Millisecond)
	}

	runtime.LockOSThread() // the event loop below is this goroutine, on one thread
	l, err := newLoop(*nClients)
	if err != nil {
		srv.signal(syscall.SIGKILL)
		fail("epoll: %v", err)
	}

	// Connect every client and put it in its room, a few at a time: a client counts as in
	// its room once a notice naming the room came (the answer to its /join), and at most 10
	// are on their way at once, so the room every client starts in (the lobby) stays small
	// and its news does not flood anyone.
	t0 := time.Now()
	for deadline := now() + int64(60*time.Second); l.joinedN < *nClients && now() < deadline; {
		for len(l.clients) < *nClients && len(l.clients)-l.joinedN < 10 {
			i := len(l.clients)
			if _, err := l.connect(i, "room"+strconv.Itoa(i%*nRooms), port); err != nil {
				srv.signal(syscall.SIGKILL)
				fail("client %d: %v", i, err)
			}
		}
		l.poll(10)
		if l.closed > 0 {
			srv.signal(syscall.SIGKILL)
			fail("%d clients lost their connection while joining", l.closed)
		}
	}
	if n := *nClients - l.joinedN; n > 0 {
		fmt.Println("NOTE C1: some clients saw no notice naming their room within 60 s")
		result("not_joined", float64(n))
	}
	setup := time.Since(t0)

	// The load: line number s (0, 1, 2, ...) is client s mod N's, due at start + s x
	// interval / N, so each client sends every interval, the clients staggered over it.
	pad := " " + strings.Repeat("x", 40)
	if n := *textLen - len("m 12345678901"); n > 0 {
		pad = " " + strings.Repeat("x", n-1)
	}
	pad += "\n"
	n := int64(len(l.clients))
	start := now() + int64(50*time.Millisecond)
	l.ws = start + int64(*warmup)
	l.we = l.ws + int64(*measure)
	var cpu0, self0, cpu1, self1 float64
	var w0, w1 time.Time
	buf := make([]byte, 0, 128)
	for seq := int64(0); ; {
		t := now()
		if cpu0 == 0 && t >= l.ws {
			cpu0, self0, w0 = srv.cpuSeconds(), selfCPU(), time.Now()
		}
		if t >= l.we {
			cpu1, self1, w1 = srv.cpuSeconds(), selfCPU(), time.Now()
			break
		}
		for ; start+seq*int64(*interval)/n <= t; seq++ {
			c := l.clients[seq%n]
			ts := now()
			buf = append(append(strconv.AppendInt(append(buf[:0], "m "...), ts, 10), pad...))
			if err := l.write(c, buf); err != nil {
				l.end(c)
			} else if ts >= l.ws && ts < l.we && !c.closed {
				c.sent++
			}
		}
		wait := (start + seq*int64(*interval)/n - now() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
		if wait < 1 {
			wait = 1
		}
		l.poll(int(wait))
	}
	rss := srv.rssMB()
	wall := w1.Sub(w0).Seconds()

	// Shut the server down (SIGTERM) and read until every connection ended (10 s at most;
	// then SIGKILL).
	srv.signal(syscall.SIGTERM)
	t1 := time.Now()
	killed := false
	for deadline := time.Now().Add(10 * time.Second); !(srv.exited() && l.closed == len(l.clients)); {
		if time.Now().After(deadline) {
			if !srv.exited() {
				srv.signal(syscall.SIGKILL)
				killed = true
			}
			break
		}
		l.poll(10)
	}
	shutdown := time.Since(t1)
	for _, c := range l.clients {
		l.end(c)
	}
	<-srv.done

	var h hist
	var delivered, sent, other, slow uint64
	disconnects := 0
	for _, c := range l.clients {
		for i, n := range c.hist {
			h[i] += n
		}
		delivered += c.delivered
		sent += c.sent
		other += c.other
		slow += c.slowNote
		if c.ended != 0 && c.ended < l.we {
			disconnects++
		}
	}
	// Offered: every line sent in the window goes to the other members of its room.
	members := float64(*nClients) / float64(*nRooms)
	secs := float64(*measure) / 1e9
	result("msgs_per_s", float64(delivered)/secs)
	result("sent_per_s", float64(sent)/secs)
	if sent > 0 {
		result("of_offered", float64(delivered)/(float64(sent)*(members-1)))
	}
	result("p50_ms", h.quantile(0.50)/1000)
	result("p99_ms", h.quantile(0.99)/1000)
	result("p999_ms", h.quantile(0.999)/1000)
	result("max_ms", h.quantile(1)/1000)
	result("server_cpu", (cpu1-cpu0)/wall)
	result("load_cpu", (self1-self0)/wall)
	result("server_rss_mb", rss)
	result("disconnects", float64(disconnects))
	result("slow_notices", float64(slow))
	result("blocked_sends", float64(l.blocked))
	result("setup_s", setup.Seconds())
	result("shutdown_s", shutdown.Seconds())
	// NOTE texts carry no counts (those are RESULTs): a note marks a cell once, whatever
	// the repetition.
	if slow > 0 {
		fmt.Println("NOTE C1: the server sent too-slow (full queue) or slow-down (rate limit) notices")
	} else if disconnects > 0 {
		fmt.Println("NOTE C1: connections ended during the run without a too-slow notice")
	}
	if l.blocked > 0 {
		fmt.Println("NOTE C1: some sends found the socket full (the server was not reading)")
	}
	if other > 0 {
		fmt.Println("NOTE C1: some lines were neither notices nor messages")
	}
	if killed {
		fmt.Println("NOTE C1: the server did not exit within 10 s of SIGTERM (killed)")
	}
	fmt.Printf("INFO C1 load: %d clients, %d rooms, a line every %v each, warm-up %v, window %v, one epoll loop (%s)\n",
		*nClients, *nRooms, *interval, *warmup, *measure, runtime.Version())
}
