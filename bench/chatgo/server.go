package main

// The chat server of bench/chat_load/PROTOCOL.md, written as a Go programmer would: a
// goroutine per client reading lines, a writer goroutine per client draining a bounded
// outbound channel into a bufio.Writer, rooms and nicks in maps under one RWMutex. A
// broadcast never blocks: a member whose channel is full is disconnected.

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

const maxLine = 4096 // longer lines are refused with a notice and skipped

type client struct {
	conn   net.Conn
	out    chan string // bounded outbound queue; closed (under hub.mu) when closed is set
	nick   string      // guarded by hub.mu
	room   *room       // guarded by hub.mu
	closed bool        // guarded by hub.mu
	slow   bool        // set with closed when the queue overflowed
	cut    int32       // atomic; 1: too slow, the writer drops what is queued
}

type room struct {
	name    string
	members map[*client]struct{}
}

type hub struct {
	mu       sync.RWMutex
	rooms    map[string]*room
	nicks    map[string]*client
	clients  map[*client]struct{}
	next     int
	shutdown bool
	queue    int
	rate     float64
	burst    float64
	idle     time.Duration
	writers  sync.WaitGroup
}

func validName(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// deliver queues s for c without blocking; hub.mu must be held (read or write). It
// reports false when c's queue is full: the caller kicks c once the lock is released.
func deliver(c *client, s string) bool {
	if c.closed {
		return true
	}
	select {
	case c.out <- s:
		return true
	default:
		return false
	}
}

// roomcast sends s to every member of r but skip; returns the members to kick.
func roomcast(r *room, s string, skip *client) (full []*client) {
	for m := range r.members {
		if m != skip && !deliver(m, s) {
			full = append(full, m)
		}
	}
	return full
}

// announce sends news (joins, leaves, renames) to the members of r but skip whose queue is
// less than half full: best effort, as in examples/chat/chat.lua, so a crowd joining at once
// cannot push anyone out. hub.mu must be held.
func announce(r *room, s string, skip *client) {
	for m := range r.members {
		if m != skip && !m.closed && len(m.out) < cap(m.out)/2 {
			select {
			case m.out <- s:
			default:
			}
		}
	}
}

// textProblem says why a line cannot go to a room (control characters, invalid UTF-8).
func textProblem(s string) string {
	high := false
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 32 && b != '\t' || b == 127 {
			return "control characters are not allowed"
		}
		if b >= 128 {
			high = true
		}
	}
	if high && !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	return ""
}

// drop removes c from the hub and closes its queue (the writer flushes what is queued,
// then closes the connection). slow: its queue overflowed. Takes hub.mu.
func (h *hub) drop(c *client, slow bool) {
	h.mu.Lock()
	var full []*client
	if !c.closed {
		c.closed, c.slow = true, slow
		if c.room != nil {
			delete(c.room.members, c)
			if len(c.room.members) == 0 {
				delete(h.rooms, c.room.name)
			} else if !h.shutdown {
				why := ""
				if slow {
					why = " (too slow)"
				}
				announce(c.room, "* "+c.nick+" left "+c.room.name+why+"\n", nil)
			}
			c.room = nil
		}
		delete(h.nicks, strings.ToLower(c.nick))
		delete(h.clients, c)
		if slow {
			// Disconnected without what it has not read; a slow reader may hold its writer
			// in Write: bound how long that lasts.
			atomic.StoreInt32(&c.cut, 1)
			c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		}
		close(c.out)
	}
	h.mu.Unlock()
	h.kick(full)
}

func (h *hub) kick(cs []*client) {
	for _, c := range cs {
		h.drop(c, true)
	}
}

// tell queues s for c alone.
func (h *hub) tell(c *client, s string) {
	h.mu.RLock()
	ok := deliver(c, s)
	h.mu.RUnlock()
	if !ok {
		h.drop(c, true)
	}
}

func (h *hub) join(c *client, name string, greet bool) {
	h.mu.Lock()
	var full []*client
	if c.room != nil && c.room.name == name {
		h.mu.Unlock()
		h.tell(c, "* you are already in "+name+"\n")
		return
	}
	if c.room != nil {
		delete(c.room.members, c)
		if len(c.room.members) == 0 {
			delete(h.rooms, c.room.name)
		} else {
			announce(c.room, "* "+c.nick+" left "+c.room.name+"\n", nil)
		}
	}
	r := h.rooms[name]
	if r == nil {
		r = &room{name: name, members: map[*client]struct{}{}}
		h.rooms[name] = r
	}
	announce(r, "* "+c.nick+" joined "+name+"\n", nil)
	r.members[c] = struct{}{}
	c.room = r
	msg := fmt.Sprintf("* you joined %s (%d here)\n", name, len(r.members))
	if greet {
		msg = fmt.Sprintf("* welcome to conc chat, %s! you are in %s (%d here)\n", c.nick, name, len(r.members)) +
			"* commands: /nick NAME, /join ROOM, /who, /me TEXT, /quit\n"
	}
	if !deliver(c, msg) {
		full = append(full, c)
	}
	h.mu.Unlock()
	h.kick(full)
}

func (h *hub) rename(c *client, nick string) {
	h.mu.Lock()
	var full []*client
	switch {
	case !validName(nick):
		full = h.deliverOr(c, "* a nick is 1 to 32 letters, digits, _ or -\n", full)
	case h.nicks[strings.ToLower(nick)] != nil && h.nicks[strings.ToLower(nick)] != c:
		full = h.deliverOr(c, "* nick "+nick+" is taken\n", full)
	default:
		old := c.nick
		delete(h.nicks, strings.ToLower(old))
		h.nicks[strings.ToLower(nick)] = c
		c.nick = nick
		full = h.deliverOr(c, "* you are now "+nick+"\n", full)
		if c.room != nil {
			announce(c.room, "* "+old+" is now "+nick+"\n", c)
		}
	}
	h.mu.Unlock()
	h.kick(full)
}

func (h *hub) deliverOr(c *client, s string, full []*client) []*client {
	if !deliver(c, s) {
		full = append(full, c)
	}
	return full
}

// say sends "<nick>: <text>" (or a /me notice) to the others in c's room.
func (h *hub) say(c *client, text string, me bool) {
	if bad := textProblem(text); bad != "" {
		h.tell(c, "* line dropped: "+bad+"\n")
		return
	}
	h.mu.RLock()
	var full []*client
	if c.room != nil {
		var s string
		if me {
			s = "* " + c.nick + " " + text + "\n"
		} else {
			s = c.nick + ": " + text + "\n"
		}
		full = roomcast(c.room, s, c)
	}
	h.mu.RUnlock()
	h.kick(full)
}

func (h *hub) who(c *client) {
	h.mu.RLock()
	if c.room == nil {
		h.mu.RUnlock()
		return
	}
	names := make([]string, 0, len(c.room.members))
	for m := range c.room.members {
		names = append(names, m.nick)
	}
	rname := c.room.name
	h.mu.RUnlock()
	sort.Strings(names)
	h.tell(c, fmt.Sprintf("* in %s: %s (%d)\n", rname, strings.Join(names, ", "), len(names)))
}

// writer drains c.out into the connection: one line, then whatever else is queued, then a
// Flush (one write system call for a batch).
func (h *hub) writer(c *client) {
	defer h.writers.Done()
	defer c.conn.Close()
	w := bufio.NewWriterSize(c.conn, 64*1024)
	for s := range c.out {
		if atomic.LoadInt32(&c.cut) == 1 {
			for range c.out {
			}
			break
		}
		w.WriteString(s)
	batch:
		for w.Buffered() < 64*1024 {
			select {
			case s, ok := <-c.out:
				if !ok {
					break batch
				}
				w.WriteString(s)
			default:
				break batch
			}
		}
		if w.Flush() != nil {
			// The peer is gone: the reader sees the closed connection and drops c.
			c.conn.Close()
			for range c.out {
			}
			return
		}
	}
	if c.slow {
		w.WriteString("* too slow, disconnected\n")
		w.Flush()
	}
}

// reader handles c's lines until EOF, an error, /quit or shutdown.
func (h *hub) reader(c *client) {
	defer h.drop(c, false)
	r := bufio.NewReaderSize(c.conn, maxLine)
	tokens, last := h.burst, time.Now()
	for {
		if h.idle > 0 {
			c.conn.SetReadDeadline(time.Now().Add(h.idle))
		}
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			h.tell(c, fmt.Sprintf("* line too long (over %d bytes), ignored\n", maxLine))
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				h.tell(c, "* idle too long, disconnected\n")
			} else if len(line) > 0 {
				h.handle(c, string(line)) // a last unterminated line
			}
			return
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if h.rate > 0 {
			now := time.Now()
			tokens += now.Sub(last).Seconds() * h.rate
			if tokens > h.burst {
				tokens = h.burst
			}
			last = now
			if tokens < 1 {
				h.tell(c, "* slow down: that line was dropped\n")
				continue
			}
			tokens--
		}
		if !h.handle(c, string(line)) {
			return
		}
		// As examples/chat/client.lua yields after each line: with lines already buffered
		// this goroutine would otherwise fan out line after line (until preempted) before
		// any writer ran, and fill its room's queues.
		runtime.Gosched()
	}
}

// handle runs one line; false ends the session.
func (h *hub) handle(c *client, line string) bool {
	if line[0] != '/' {
		h.say(c, line, false)
		return true
	}
	cmd, rest := line, ""
	if i := strings.IndexByte(line, ' '); i >= 0 {
		cmd, rest = line[:i], strings.TrimSpace(line[i+1:])
	}
	switch cmd {
	case "/nick":
		h.rename(c, rest)
	case "/join":
		rest = strings.TrimPrefix(rest, "#")
		if !validName(rest) {
			h.tell(c, "* a room name is 1 to 32 letters, digits, _ or -\n")
		} else {
			h.join(c, rest, false)
		}
	case "/who":
		h.who(c)
	case "/me":
		if rest == "" {
			h.tell(c, "* usage: /me TEXT\n")
		} else {
			h.say(c, rest, true)
		}
	case "/quit":
		h.tell(c, "* bye\n")
		return false
	default:
		h.tell(c, "* unknown command; try /nick NAME, /join ROOM, /who, /me TEXT, /quit\n")
	}
	return true
}

func (h *hub) accept(conn net.Conn) {
	c := &client{conn: conn, out: make(chan string, h.queue)}
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		conn.Close()
		return
	}
	for {
		h.next++
		c.nick = "guest" + strconv.Itoa(h.next)
		if h.nicks[strings.ToLower(c.nick)] == nil {
			break
		}
	}
	h.nicks[strings.ToLower(c.nick)] = c
	h.clients[c] = struct{}{}
	h.writers.Add(1)
	h.mu.Unlock()
	go h.writer(c)
	h.join(c, "lobby", true)
	go h.reader(c)
}

func serve(args []string) int {
	fs := flag.NewFlagSet("chatgo serve", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	port := fs.Int("port", 7000, "port (0: any free port)")
	rate := fs.Float64("rate", 5, "lines a second per client (0: no limit)")
	burst := fs.Float64("burst", 10, "rate limit burst")
	idle := fs.Float64("idle", 300, "seconds without a line before a client is dropped (0: never)")
	queue := fs.Int("queue", 256, "outbound queue per client (lines)")
	if fs.Parse(args) != nil {
		return 2
	}
	l, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatgo:", err)
		return 1
	}
	h := &hub{rooms: map[string]*room{}, nicks: map[string]*client{}, clients: map[*client]struct{}{},
		queue: *queue, rate: *rate, burst: *burst, idle: time.Duration(*idle * float64(time.Second))}
	fmt.Fprintf(os.Stderr, "chatgo: listening on %s\n", l.Addr())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return // closed at shutdown
			}
			h.accept(conn)
		}
	}()
	<-sigs
	// Graceful shutdown: stop accepting, tell everyone, flush the queues, exit within 5 s.
	l.Close()
	h.mu.Lock()
	h.shutdown = true
	for c := range h.clients {
		deliver(c, "* server shutting down\n")
		c.closed = true
		close(c.out)
		c.conn.SetWriteDeadline(time.Now().Add(4 * time.Second))
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.writers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		fmt.Fprintln(os.Stderr, "chatgo: some clients did not take their last lines in 5 s")
	}
	return 0
}
