/*
 * net.c: TCP on libuv (conc.net): listeners (listen, accept, addr, close) and connections
 * (connect, read, read_line, read_exactly, write, close_write, close, peer, addr).
 *
 * Ownership and invariants:
 * - The libuv side of a listener or connection (the uv_tcp_t, its requests and the linger
 *   timer) lives in a malloc'ed net_block_t, because libuv keeps pointers into it until
 *   its callbacks have run, which the Lua GC knows nothing about. `pending` counts the
 *   callbacks still to come (the handles' close callbacks, requests in flight); the block
 *   is freed when it reaches 0. `owner` is the Lua object, or NULL once that object was
 *   closed or collected: a callback that finds no owner only releases its share.
 * - A task waiting on a connection has its object at stack slot 1 (connect: the new
 *   connection's slot) and the request's argument at valslot (read_line's max,
 *   read_exactly's n, write's data), so nothing is copied while it waits. Readers and
 *   writers are served in FIFO order; a waiter whose ctx ends leaves its queue, and the
 *   queue's on_leave hook serves the ones behind it.
 * - A handle keeps the loop alive (counts against deadlock detection) only while a task
 *   waits on it: an idle listener or connection does not hide a deadlock.
 * - Reading is eager: once a connection was read from, libuv reads into its buffer until
 *   BUF_BOUND bytes wait unread (or more, while the first reader needs more: a long line,
 *   read_exactly), then stops until a reader drains it. So a peer can make a connection
 *   hold at most max(BUF_BOUND, the largest request) + READ_CHUNK bytes.
 * - Writing tries the socket first (uv_try_write); what it does not take is copied into a
 *   write request. While more than WRITE_BOUND bytes are queued unsent, writers wait, so
 *   a peer that does not read cannot grow memory. A waiting write that ends with its ctx
 *   queued nothing.
 * - Closing wakes every waiter with the "closed" error. Data still queued is flushed in
 *   the background, after a shutdown (FIN), for at most LINGER_MS, then the handle closes;
 *   when the Lua state closes meanwhile, it waits for that flush.
 *
 * Connections have TCP_NODELAY set, as Go's do: a write goes out at once.
 *
 * Errors a peer can cause come back to Lua as (nil, code, message); conc/net.lua turns
 * them into conc errors of kind "net". SIGPIPE is ignored once the first socket exists
 * (when nobody else handles it), or a write to a closed peer would kill the process.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "conc.h"

/*** @module conc.net */

#define READ_CHUNK 16384
#define BUF_BOUND 65536
#define WRITE_BOUND 65536
#define LINGER_MS 5000
#define DEFAULT_MAX_LINE 65536

enum { REQ_READ = 1, REQ_LINE, REQ_EXACT };

typedef struct net_block {
    conc_closer_t closer;  /* first: conc_sched_close closes what is left through it */
    uv_tcp_t tcp;
    uv_timer_t linger;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    uv_getaddrinfo_t gai;
    conc_sched_t *s;
    void *owner;           /* the conc_conn_t or conc_listener_t, or NULL */
    int pending;           /* libuv callbacks still to come */
    int port;              /* connect: the port to use once the name resolved */
    unsigned char linger_on, shut, closing;
} net_block_t;

/* The head of a connection and of a listener. */
typedef struct net_obj {
    const void *tag;
    struct net_block *b;   /* NULL once closed (and, for a connection, before it opened) */
} net_obj_t;

typedef struct conc_conn {
    const void *tag;       /* CONC_TAG(CONC_UP_CONN_MT) */
    net_block_t *b;        /* as in net_obj_t */
    conc_waitq_t readers, writers, opening;
    char *buf;             /* unread bytes are buf[off, len) */
    size_t off, len, cap;
    int rerr, werr;        /* sticky libuv errors */
    unsigned id;
    unsigned char eof, reading, skip, wshut;
} conc_conn_t;

typedef struct conc_listener {
    const void *tag;       /* CONC_TAG(CONC_UP_LISTENER_MT) */
    net_block_t *b;        /* as in net_obj_t */
    conc_waitq_t acceptors;
    int ready;             /* libuv holds an accepted connection for us */
    int err;               /* an incoming connection failed: the next accept reports it */
    unsigned id;
} conc_listener_t;

/* --- blocks ----------------------------------------------------------------------------- */

static void release(net_block_t *b)
{
    if (--b->pending == 0)
        free(b);
}

static void on_handle_closed(uv_handle_t *h)
{
    release((net_block_t *)h->data);
}

static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

static void close_handles(net_block_t *b);

/* The Lua state closes: what is still open closes now, but a flush (see close_block)
 * is let finish, within its bound. */
static void close_at_exit(conc_closer_t *closer)
{
    net_block_t *b = (net_block_t *)closer;
    if (b->linger_on)
        return;
    if (b->owner != NULL)
        ((net_obj_t *)b->owner)->b = NULL;
    b->owner = NULL;
    close_handles(b);
}

/* A block for owner with an initialized TCP handle, or NULL (out of memory). Never
 * raises: libuv callbacks make blocks too. */
static net_block_t *new_block(conc_sched_t *s, void *owner)
{
    net_block_t *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (uv_tcp_init(s->loop, &b->tcp) != 0) {
        free(b);
        return NULL;
    }
    ignore_sigpipe();
    b->closer.close = close_at_exit;
    b->tcp.data = b;
    b->s = s;
    b->owner = owner;
    b->pending = 1; /* the handle's close callback */
    uv_unref((uv_handle_t *)&b->tcp);
    return b;
}

static void close_handles(net_block_t *b)
{
    if (b->closing)
        return;
    b->closing = 1;
    uv_close((uv_handle_t *)&b->tcp, on_handle_closed);
    if (b->linger_on)
        uv_close((uv_handle_t *)&b->linger, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    net_block_t *b = (net_block_t *)req->data;
    (void)status;
    if (b->owner == NULL) /* closed while flushing: the flush is over */
        close_handles(b);
    release(b);
}

static void on_linger(uv_timer_t *h)
{
    close_handles((net_block_t *)h->data);
}

static void start_shutdown(net_block_t *b)
{
    b->sreq.data = b;
    if (uv_shutdown(&b->sreq, (uv_stream_t *)&b->tcp, on_shutdown) == 0) {
        b->shut = 1;
        b->pending++;
    }
}

/* Lets unsent data go out (after a FIN) for at most LINGER_MS, then closes. The flush
 * keeps the loop alive, as pending I/O: when the Lua state closes, it waits for it. */
static void close_block(net_block_t *b)
{
    b->owner = NULL;
    if (b->closing)
        return;
    uv_read_stop((uv_stream_t *)&b->tcp);
    if (b->tcp.write_queue_size == 0) {
        close_handles(b);
        return;
    }
    if (!b->shut)
        start_shutdown(b);
    if (!b->shut || uv_timer_init(b->s->loop, &b->linger) != 0) {
        close_handles(b);
        return;
    }
    b->linger.data = b;
    b->linger_on = 1;
    b->pending++;
    uv_timer_start(&b->linger, on_linger, LINGER_MS, 0);
    uv_ref((uv_handle_t *)&b->tcp);
}

/* A handle keeps the loop alive only while a task waits on it. */
static void set_busy(net_block_t *b, int busy)
{
    if (b == NULL || b->closing)
        return;
    if (busy)
        uv_ref((uv_handle_t *)&b->tcp);
    else
        uv_unref((uv_handle_t *)&b->tcp);
}

/* --- results ------------------------------------------------------------------------------ */

/* Pushes (nil, code, message) for a libuv error; conc/net.lua makes the conc error. */
static int push_uv_error(lua_State *L, int err, const char *what)
{
    lua_pushnil(L);
    lua_pushstring(L, uv_err_name(err));
    lua_pushfstring(L, "%s: %s", what, uv_strerror(err));
    return 3;
}

static int push_error(lua_State *L, const char *code, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, code);
    lua_pushstring(L, msg);
    return 3;
}

static int push_closed(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    lua_pushfstring(L, "%s: use of a closed connection", what);
    return 3;
}

/* Pushes "host", port for a socket address; returns 2, or (nil, code, message). */
static int push_sockaddr(lua_State *L, const struct sockaddr_storage *sa, int rc, const char *what)
{
    char host[64];
    int port;
    if (rc != 0)
        return push_uv_error(L, rc, what);
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
    }
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
}

/* Pushes "host", port of this end (peer = 0) or of the other end of b's socket; or the
 * error, "closed" when b is NULL. */
static int push_address(lua_State *L, net_block_t *b, int peer, const char *what)
{
    struct sockaddr_storage sa;
    int len = (int)sizeof sa, rc;
    if (b == NULL)
        return push_closed(L, what);
    rc = peer ? uv_tcp_getpeername(&b->tcp, (struct sockaddr *)&sa, &len)
              : uv_tcp_getsockname(&b->tcp, (struct sockaddr *)&sa, &len);
    return push_sockaddr(L, &sa, rc, what);
}

/* --- arguments ------------------------------------------------------------------------- */

static conc_conn_t *checkconn(lua_State *L, const char *fname)
{
    conc_conn_t *c = (conc_conn_t *)conc_checkud(L, 1, CONC_UP_CONN_MT, sizeof(conc_conn_t));
    if (c == NULL)
        conc_argerror(L, fname, 0, 1, "connection");
    return c;
}

static conc_listener_t *checklistener(lua_State *L, const char *fname)
{
    conc_listener_t *l = (conc_listener_t *)conc_checkud(L, 1, CONC_UP_LISTENER_MT, sizeof(conc_listener_t));
    if (l == NULL)
        conc_argerror(L, fname, 0, 1, "listener");
    return l;
}

static const char *checkhost(lua_State *L, int idx, const char *fname)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        conc_argerror(L, fname, idx, idx, "host string");
    return lua_tostring(L, idx);
}

static int checkport(lua_State *L, int idx, const char *fname)
{
    lua_Number p;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, idx, idx, "port number");
    p = lua_tonumber(L, idx);
    if (!(p >= 0 && p <= 65535) || p != (lua_Number)(int)p)
        conc_error(L, "%s: bad argument #%d (port must be a whole number in 0..65535, got %s)", fname, idx,
                   lua_tostring(L, idx));
    return (int)p;
}

/* A whole number >= lo at idx (absent or nil: dflt). */
static size_t checksize(lua_State *L, int idx, const char *fname, int arg, lua_Number lo, size_t dflt)
{
    lua_Number n;
    if (lua_isnoneornil(L, idx))
        return dflt;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, arg, idx, "number");
    n = lua_tonumber(L, idx);
    if (!(n >= lo && n <= 9007199254740992.0) || n != (lua_Number)(lua_Integer)n)
        conc_error(L, "%s: bad argument #%d (whole number >= %d expected, got %s)", fname, arg, (int)lo,
                   lua_tostring(L, idx));
    return (size_t)n;
}

/* Fills *addr for a numeric host; 0, or a libuv error. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *addr)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return 0;
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
}

static void set_port(struct sockaddr_storage *addr, int port)
{
    if (addr->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((unsigned short)port);
    else
        ((struct sockaddr_in *)addr)->sin_port = htons((unsigned short)port);
}

/* --- connections: reading ------------------------------------------------------------------ */

static void readers_left(conc_waitq_t *q, void *s);
static void writers_left(conc_waitq_t *q, void *s);
static void opening_left(conc_waitq_t *q, void *s);

static conc_conn_t *new_conn(lua_State *L, conc_sched_t *s)
{
    conc_conn_t *c = (conc_conn_t *)conc_compat_newud(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->tag = CONC_TAG(CONC_UP_CONN_MT);
    conc_waitq_init(&c->readers);
    conc_waitq_init(&c->writers);
    conc_waitq_init(&c->opening);
    c->readers.on_leave = readers_left;
    c->writers.on_leave = writers_left;
    c->opening.on_leave = opening_left;
    c->id = ++s->next_obj_id;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_CONN_MT));
    lua_setmetatable(L, -2);
    return c;
}

static void consume(conc_conn_t *c, size_t n)
{
    c->off += n;
    if (c->off == c->len) {
        c->off = c->len = 0;
        if (c->cap > READ_CHUNK) { /* a long line or read_exactly grew it: give it back */
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
    }
}

/* After an overlong line, the rest of that line is dropped. */
static void skip_rest_of_line(conc_conn_t *c)
{
    const char *nl;
    if (!c->skip || c->len == c->off)
        return;
    nl = memchr(c->buf + c->off, '\n', c->len - c->off);
    if (nl == NULL) {
        consume(c, c->len - c->off);
        return;
    }
    c->skip = 0;
    consume(c, (size_t)(nl - (c->buf + c->off)) + 1);
}

/* Serves one request (kind, param) from the buffer: pushes its results onto `to` and
 * returns their count, or returns 0 when it must wait for more bytes. */
static int take(lua_State *to, conc_conn_t *c, int kind, size_t param)
{
    size_t avail;
    lua_checkstack(to, 3);
    if (c->b == NULL)
        return push_closed(to, kind == REQ_READ ? "read" : kind == REQ_LINE ? "read_line" : "read_exactly");
    skip_rest_of_line(c);
    avail = c->len - c->off;
    if (kind == REQ_READ && avail > 0) {
        size_t n = avail < BUF_BOUND ? avail : BUF_BOUND;
        lua_pushlstring(to, c->buf + c->off, n);
        consume(c, n);
        return 1;
    }
    if (kind == REQ_LINE) {
        const char *p = c->buf + c->off;
        const char *nl = avail > 0 ? memchr(p, '\n', avail) : NULL;
        if (nl != NULL || avail > param) {
            size_t n = nl != NULL ? (size_t)(nl - p) : avail;
            if (n > param) {
                consume(c, nl != NULL ? n + 1 : n);
                c->skip = nl == NULL;
                return push_error(to, "toolong", "read_line: line longer than the maximum");
            }
            lua_pushlstring(to, p, n > 0 && p[n - 1] == '\r' ? n - 1 : n);
            consume(c, n + 1);
            return 1;
        }
    }
    if (kind == REQ_EXACT && avail >= param) {
        lua_pushlstring(to, c->buf + c->off, param);
        consume(c, param);
        return 1;
    }
    if (c->rerr != 0)
        return push_uv_error(to, c->rerr, kind == REQ_READ ? "read" : kind == REQ_LINE ? "read_line" : "read_exactly");
    if (c->eof) {
        if (kind == REQ_EXACT)
            return push_error(to, "EOF", "read_exactly: the stream ended before the bytes asked for");
        if (kind == REQ_LINE && avail > 0 && !c->skip) { /* the last line had no newline */
            lua_pushlstring(to, c->buf + c->off, avail);
            consume(c, avail);
            return 1;
        }
        lua_pushnil(to);
        return 1;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    net_block_t *b = (net_block_t *)h->data;
    conc_conn_t *c = (conc_conn_t *)b->owner;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
    if (c == NULL)
        return;
    if (c->cap - c->len < READ_CHUNK && c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < READ_CHUNK) {
        char *p = realloc(c->buf, c->len + READ_CHUNK);
        if (p == NULL)
            return; /* libuv reports UV_ENOBUFS to on_read */
        c->buf = p;
        c->cap = c->len + READ_CHUNK;
    }
    buf->base = c->buf + c->len;
    buf->len = c->cap - c->len;
}

static void update_reading(conc_conn_t *c);

/* Wakes the readers whose requests the buffer now satisfies, in order. */
static void serve_readers(conc_sched_t *s, conc_conn_t *c)
{
    conc_waiter_t *w;
    while ((w = c->readers.head) != NULL) {
        conc_task_t *t = (conc_task_t *)w->owner;
        size_t param = 0;
        int n;
        if (w->caseno != REQ_READ)
            param = (size_t)lua_tonumber(t->co, w->valslot);
        n = take(t->co, c, w->caseno, param);
        if (n == 0)
            break;
        conc_waitq_remove(w);
        conc_sched_wake(s, t, n);
    }
    update_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    net_block_t *b = (net_block_t *)st->data;
    conc_conn_t *c = (conc_conn_t *)b->owner;
    (void)buf;
    if (c == NULL || nread == 0)
        return;
    if (nread > 0)
        c->len += (size_t)nread;
    else if (nread == UV_EOF)
        c->eof = 1;
    else
        c->rerr = (int)nread;
    serve_readers(b->s, c);
}

/* Reads while a reader waits, and goes on reading ahead until BUF_BOUND bytes are
 * buffered; keeps the loop alive only while a task waits on the connection. */
static void update_reading(conc_conn_t *c)
{
    net_block_t *b = c->b;
    int want;
    if (b == NULL || b->closing)
        return;
    want = !c->eof && c->rerr == 0 && (c->readers.head != NULL || (c->reading && c->len - c->off < BUF_BOUND));
    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&b->tcp, on_alloc, on_read);
        if (rc == 0)
            c->reading = 1;
        else if (c->rerr == 0)
            c->rerr = rc;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&b->tcp);
        c->reading = 0;
    }
    set_busy(b, c->readers.head != NULL || c->writers.head != NULL || c->opening.head != NULL);
}

static void readers_left(conc_waitq_t *q, void *s)
{
    conc_conn_t *c = conc_container_of(q, conc_conn_t, readers);
    serve_readers((conc_sched_t *)s, c);
}

/* read, read_line and read_exactly: stack [conn, ...], the request's argument at
 * valslot (0: none), the ctx at ctxslot. */
static int read_request(lua_State *L, conc_conn_t *c, int kind, size_t param, int valslot, int ctxslot,
                        const char *fname)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *x = conc_ctx_opt(L, ctxslot, fname, ctxslot - 1);
    conc_task_t *t;
    int n;
    if ((n = conc_ctx_failed(L, x, 0)) != 0)
        return n;
    if (c->readers.head == NULL && (n = take(L, c, kind, param)) != 0) {
        update_reading(c);
        return n;
    }
    /* this call waits: reading must be on (the waiter is linked only once the park is
     * committed, so update_reading would not see it yet) */
    if (!c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->b->tcp, on_alloc, on_read);
        if (rc != 0) {
            c->rerr = rc;
            return take(L, c, kind, param);
        }
        c->reading = 1;
    }
    t = conc_sched_parker(L, s, fname);
    conc_task_wait_on(L, t, &c->readers, valslot, kind);
    conc_task_wait_ctx(L, t, x, ctxslot);
    set_busy(c->b, 1);
    return conc_sched_park(L, s, t, CONC_WAIT_READ);
}

/***
 * A TCP connection, from `net.connect` or `l:accept`. Every method that waits takes an
 * optional ctx, last; it returns `nil, ctx:err()` when the ctx ends first. Failures the
 * peer causes come back as `nil, err`, a conc error of kind "net" whose `code` is the
 * libuv error name (`ECONNRESET`, `EPIPE`, ...) or "closed" (the connection was closed
 * here), "toolong" or "EOF".
 * @type Connection
 */

/***
 * Reads what has arrived (at most 64 KiB), waiting for at least one byte.
 * @tparam[opt] Context ctx ends the wait early
 * @treturn ?string the bytes, or nil at the end of the stream
 * @return or nil, err
 * @function read
 */
static int c_read(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:read");
    conc_check_nargs(L, "c:read", 1, 1);
    lua_settop(L, 2);
    return read_request(L, c, REQ_READ, 0, 0, 2, "c:read");
}

/***
 * Reads one line, waiting until it is whole. The line comes without its "\n" (and
 * without a "\r" before it). At the end of the stream, a last line without a newline is
 * returned, then nil. A line longer than `max` bytes fails with code "toolong"; the rest
 * of that line is skipped, so the next call reads the line after it.
 * @tparam[opt] Context ctx ends the wait early
 * @int[opt=65536] max the longest line accepted, in bytes
 * @treturn ?string the line, or nil at the end of the stream
 * @return or nil, err
 * @function read_line
 */
static int c_read_line(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:read_line");
    size_t max;
    conc_check_nargs(L, "c:read_line", 2, 1);
    max = checksize(L, 3, "c:read_line", 2, 0, DEFAULT_MAX_LINE);
    lua_settop(L, 3);
    lua_pushinteger(L, (lua_Integer)max);
    lua_replace(L, 3);
    return read_request(L, c, REQ_LINE, max, 3, 2, "c:read_line");
}

/***
 * Reads exactly `n` bytes, waiting for all of them. When the stream ends first, it fails
 * with code "EOF" and leaves the bytes that came for the next read.
 * @int n how many bytes
 * @tparam[opt] Context ctx ends the wait early
 * @treturn string the bytes
 * @return or nil, err
 * @function read_exactly
 */
static int c_read_exactly(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:read_exactly");
    size_t n;
    conc_check_nargs(L, "c:read_exactly", 2, 1);
    if (lua_isnoneornil(L, 2))
        conc_argerror(L, "c:read_exactly", 1, 2, "number");
    n = checksize(L, 2, "c:read_exactly", 1, 0, 0);
    lua_settop(L, 3);
    return read_request(L, c, REQ_EXACT, n, 2, 3, "c:read_exactly");
}

/* --- connections: writing --------------------------------------------------------------- */

typedef struct write_req {
    uv_write_t req;
    char data[1];
} write_req_t;

static void serve_writers(conc_sched_t *s, conc_conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    net_block_t *b = (net_block_t *)req->handle->data;
    conc_conn_t *c = (conc_conn_t *)b->owner;
    free(req);
    if (c != NULL) {
        if (status < 0 && status != UV_ECANCELED && c->werr == 0)
            c->werr = status;
        serve_writers(b->s, c);
    }
    release(b);
}

/* Hands data to libuv: to the socket at once when it takes it, else as a copy queued in a
 * write request. 0, or a libuv error. */
static int hand_over(conc_conn_t *c, const char *p, size_t n)
{
    net_block_t *b = c->b;
    uv_buf_t buf;
    write_req_t *req;
    int rc;
    if (n == 0)
        return 0;
    if (n > 0x7fffffff)
        return UV_E2BIG;
    if (b->tcp.write_queue_size == 0) {
        buf = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
        rc = uv_try_write((uv_stream_t *)&b->tcp, &buf, 1);
        if (rc >= 0) {
            p += rc;
            n -= (size_t)rc;
            if (n == 0)
                return 0;
        } else if (rc != UV_EAGAIN) {
            return rc;
        }
    }
    req = malloc(offsetof(write_req_t, data) + n);
    if (req == NULL)
        return UV_ENOMEM;
    memcpy(req->data, p, n);
    buf = uv_buf_init(req->data, (unsigned)n);
    rc = uv_write(&req->req, (uv_stream_t *)&b->tcp, &buf, 1, on_write);
    if (rc != 0) {
        free(req);
        return rc;
    }
    b->pending++;
    return 0;
}

/* Writes the string at L's idx, or pushes why it cannot: returns the count pushed. */
static int write_now(lua_State *L, lua_State *to, conc_conn_t *c, int idx)
{
    size_t n;
    const char *p;
    int rc;
    lua_checkstack(to, 3);
    if (c->b == NULL)
        return push_closed(to, "write");
    if (c->wshut)
        return push_error(to, "EPIPE", "write: the connection was closed for writing (close_write)");
    if (c->werr != 0)
        return push_uv_error(to, c->werr, "write");
    p = lua_tolstring(L, idx, &n);
    rc = hand_over(c, p, n);
    if (rc != 0) {
        c->werr = rc;
        return push_uv_error(to, rc, "write");
    }
    lua_pushboolean(to, 1);
    return 1;
}

static int writer_may_go(conc_conn_t *c)
{
    return c->b == NULL || c->werr != 0 || c->wshut || c->b->tcp.write_queue_size <= WRITE_BOUND;
}

static void serve_writers(conc_sched_t *s, conc_conn_t *c)
{
    conc_waiter_t *w;
    while ((w = c->writers.head) != NULL && writer_may_go(c)) {
        conc_task_t *t = (conc_task_t *)w->owner;
        conc_waitq_remove(w);
        conc_sched_wake(s, t, write_now(t->co, t->co, c, w->valslot));
    }
    update_reading(c);
}

static void writers_left(conc_waitq_t *q, void *s)
{
    serve_writers((conc_sched_t *)s, conc_container_of(q, conc_conn_t, writers));
}

/***
 * Writes `data`. It returns once libuv has taken the data (sent, or copied to be sent).
 * While more than 64 KiB wait unsent (the peer does not read), it first waits for the
 * queue to drain; if the ctx ends then, nothing of `data` was written.
 * @string data the bytes
 * @tparam[opt] Context ctx ends the wait early
 * @treturn boolean true
 * @return or nil, err
 * @function write
 */
static int c_write(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:write");
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *x;
    conc_task_t *t;
    int n;
    conc_check_nargs(L, "c:write", 2, 1);
    if (lua_type(L, 2) != LUA_TSTRING)
        conc_argerror(L, "c:write", 1, 2, "string");
    x = conc_ctx_opt(L, 3, "c:write", 2);
    lua_settop(L, 3);
    if ((n = conc_ctx_failed(L, x, 0)) != 0)
        return n;
    if (c->b == NULL || (c->writers.head == NULL && writer_may_go(c)))
        return write_now(L, L, c, 2);
    t = conc_sched_parker(L, s, "c:write");
    conc_task_wait_on(L, t, &c->writers, 2, 0);
    conc_task_wait_ctx(L, t, x, 3);
    set_busy(c->b, 1);
    return conc_sched_park(L, s, t, CONC_WAIT_WRITE);
}

/***
 * Closes the sending side (a FIN after the data already written): the peer reads the end
 * of the stream, and this side can still read.
 * @treturn boolean true
 * @return or nil, err
 * @function close_write
 */
static int c_close_write(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:close_write");
    conc_check_nargs(L, "c:close_write", 0, 1);
    if (c->b == NULL)
        return push_closed(L, "close_write");
    if (!c->wshut) {
        c->wshut = 1;
        start_shutdown(c->b);
        serve_writers(conc_sched_get(L), c);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* --- connections: closing, addresses ------------------------------------------------------- */

static void wake_all(conc_sched_t *s, conc_waitq_t *q, const char *what)
{
    conc_waiter_t *w;
    while ((w = conc_waitq_pop(q)) != NULL) {
        conc_task_t *t = (conc_task_t *)w->owner;
        conc_sched_wake(s, t, push_closed(t->co, what));
    }
}

static void close_conn(conc_sched_t *s, conc_conn_t *c)
{
    net_block_t *b = c->b;
    if (b == NULL)
        return;
    c->b = NULL;
    if (s != NULL) {
        wake_all(s, &c->readers, "read");
        wake_all(s, &c->writers, "write");
    }
    free(c->buf);
    c->buf = NULL;
    c->off = c->len = c->cap = 0;
    close_block(b);
}

/***
 * Closes the connection: tasks waiting on it get code "closed", and so does every later
 * call. Data already written but still unsent is flushed in the background, for at most
 * 5 seconds. Closing again does nothing. A connection that is collected is closed.
 * @treturn boolean true
 * @function close
 */
static int c_close(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:close");
    conc_check_nargs(L, "c:close", 0, 1);
    close_conn(conc_sched_get(L), c);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_gc(lua_State *L)
{
    conc_conn_t *c = (conc_conn_t *)lua_touserdata(L, 1);
    close_conn(NULL, c); /* nobody waits on a collected connection */
    return 0;
}

/***
 * The address of the other end.
 * @treturn string host
 * @treturn int port
 * @return or nil, err
 * @function peer
 */
static int c_peer(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:peer");
    conc_check_nargs(L, "c:peer", 0, 1);
    return push_address(L, c->b, 1, "peer");
}

/***
 * The local address of this end.
 * @treturn string host
 * @treturn int port
 * @return or nil, err
 * @function addr
 */
static int c_addr(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:addr");
    conc_check_nargs(L, "c:addr", 0, 1);
    return push_address(L, c->b, 0, "addr");
}

static int c_tostring(lua_State *L)
{
    conc_conn_t *c = checkconn(L, "c:__tostring");
    lua_pushfstring(L, "conn#%d%s", (int)c->id, c->b == NULL ? " (closed)" : "");
    return 1;
}

/* --- connect --------------------------------------------------------------------------------- */

/* Wakes the connecting task with the connection (at its valslot) or an error. */
static void connect_done(net_block_t *b, int status)
{
    conc_conn_t *c = (conc_conn_t *)b->owner;
    conc_waiter_t *w = c != NULL ? conc_waitq_pop(&c->opening) : NULL;
    conc_task_t *t;
    int n = 1;
    if (w == NULL) /* its task went away (ctx): the connection is garbage */
        return;
    t = (conc_task_t *)w->owner;
    lua_checkstack(t->co, 3);
    if (status == 0) {
        uv_tcp_nodelay(&b->tcp, 1);
        lua_pushvalue(t->co, w->valslot);
        update_reading(c);
    } else {
        n = push_uv_error(t->co, status, "connect");
        close_conn(NULL, c);
    }
    conc_sched_wake(b->s, t, n);
}

static void on_connect(uv_connect_t *req, int status)
{
    net_block_t *b = (net_block_t *)req->data;
    connect_done(b, status);
    release(b);
}

static int start_connect(net_block_t *b, const struct sockaddr *addr)
{
    int rc;
    b->creq.data = b;
    rc = uv_tcp_connect(&b->creq, &b->tcp, addr, on_connect);
    if (rc == 0)
        b->pending++;
    return rc;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    net_block_t *b = (net_block_t *)req->data;
    if (b->owner != NULL && !b->closing) {
        if (status == 0 && res != NULL) {
            struct sockaddr_storage addr;
            memcpy(&addr, res->ai_addr, res->ai_addrlen);
            set_port(&addr, b->port);
            status = start_connect(b, (const struct sockaddr *)&addr);
        } else if (status == 0) {
            status = UV_EAI_NONAME;
        }
        if (status != 0)
            connect_done(b, status);
    }
    uv_freeaddrinfo(res);
    release(b);
}

static void opening_left(conc_waitq_t *q, void *s)
{
    conc_conn_t *c = conc_container_of(q, conc_conn_t, opening);
    (void)s;
    close_conn(NULL, c); /* the connect was abandoned: nobody will get this connection */
}

/* net.connect(host, port [, ctx]), documented in conc/net.lua */
static int l_connect(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    const char *host = checkhost(L, 1, "net.connect");
    int port = checkport(L, 2, "net.connect");
    conc_ctx_t *x = conc_ctx_opt(L, 3, "net.connect", 3);
    struct sockaddr_storage addr;
    conc_conn_t *c;
    conc_task_t *t;
    int rc, n;
    conc_check_nargs(L, "net.connect", 3, 0);
    lua_settop(L, 3);
    if ((n = conc_ctx_failed(L, x, 0)) != 0)
        return n;
    t = conc_sched_parker(L, s, "net.connect");
    c = new_conn(L, s); /* slot 4 */
    if ((c->b = new_block(s, c)) == NULL)
        return conc_error(L, "net.connect: out of memory");
    if (numeric_addr(host, port, &addr) == 0) {
        rc = start_connect(c->b, (const struct sockaddr *)&addr);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->b->port = port;
        c->b->gai.data = c->b;
        rc = uv_getaddrinfo(s->loop, &c->b->gai, on_resolved, host, NULL, &hints);
        if (rc == 0)
            c->b->pending++;
    }
    if (rc != 0) {
        close_conn(NULL, c);
        return push_uv_error(L, rc, "connect");
    }
    conc_task_wait_on(L, t, &c->opening, 4, 0);
    t->waiters[0].objslot = 4;
    conc_task_wait_ctx(L, t, x, 3);
    set_busy(c->b, 1);
    return conc_sched_park(L, s, t, CONC_WAIT_CONNECT);
}

/* --- listeners ------------------------------------------------------------------------------ */

/* Accepts the connection libuv holds into the new connection at co's slot `cslot`; pushes
 * it (or an error) onto co and returns the count. */
static int accept_into(lua_State *co, conc_sched_t *s, conc_listener_t *l, int cslot)
{
    conc_conn_t *c = (conc_conn_t *)lua_touserdata(co, cslot);
    int rc;
    lua_checkstack(co, 3);
    if (l->err != 0) {
        rc = l->err;
        l->err = 0;
        return push_uv_error(co, rc, "accept");
    }
    l->ready = 0;
    c->b = new_block(s, c);
    if (c->b == NULL)
        return push_uv_error(co, UV_ENOMEM, "accept");
    rc = uv_accept((uv_stream_t *)&l->b->tcp, (uv_stream_t *)&c->b->tcp);
    if (rc != 0) {
        close_conn(NULL, c);
        return push_uv_error(co, rc, "accept");
    }
    uv_tcp_nodelay(&c->b->tcp, 1);
    lua_pushvalue(co, cslot);
    return 1;
}

static void serve_acceptors(conc_sched_t *s, conc_listener_t *l)
{
    conc_waiter_t *w;
    while ((l->ready || l->err != 0) && (w = conc_waitq_pop(&l->acceptors)) != NULL) {
        conc_task_t *t = (conc_task_t *)w->owner;
        conc_sched_wake(s, t, accept_into(t->co, s, l, w->valslot));
    }
    set_busy(l->b, l->acceptors.head != NULL);
}

static void on_connection(uv_stream_t *server, int status)
{
    net_block_t *b = (net_block_t *)server->data;
    conc_listener_t *l = (conc_listener_t *)b->owner;
    if (l == NULL)
        return;
    if (status < 0)
        l->err = status;
    else
        l->ready = 1;
    serve_acceptors(b->s, l);
}

static void acceptors_left(conc_waitq_t *q, void *s)
{
    conc_listener_t *l = conc_container_of(q, conc_listener_t, acceptors);
    (void)s;
    set_busy(l->b, l->acceptors.head != NULL);
}

/***
 * A TCP listener, from `net.listen`.
 * @type Listener
 */

/***
 * Waits for the next incoming connection.
 * @tparam[opt] Context ctx ends the wait early
 * @treturn Connection the connection
 * @return or nil, err (code "closed" once the listener is closed)
 * @function accept
 */
static int l_accept(lua_State *L)
{
    conc_listener_t *l = checklistener(L, "l:accept");
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *x;
    conc_task_t *t;
    int n;
    conc_check_nargs(L, "l:accept", 1, 1);
    x = conc_ctx_opt(L, 2, "l:accept", 1);
    lua_settop(L, 2);
    if ((n = conc_ctx_failed(L, x, 0)) != 0)
        return n;
    if (l->b == NULL)
        return push_closed(L, "accept");
    new_conn(L, s); /* slot 3: the connection to fill */
    if (l->acceptors.head == NULL && (l->ready || l->err != 0))
        return accept_into(L, s, l, 3);
    t = conc_sched_parker(L, s, "l:accept");
    conc_task_wait_on(L, t, &l->acceptors, 3, 0);
    conc_task_wait_ctx(L, t, x, 2);
    set_busy(l->b, 1);
    return conc_sched_park(L, s, t, CONC_WAIT_ACCEPT);
}

/***
 * The address the listener is bound to: with port 0, the port the system chose.
 * @treturn string host
 * @treturn int port
 * @return or nil, err
 * @function addr
 */
static int l_addr(lua_State *L)
{
    conc_listener_t *l = checklistener(L, "l:addr");
    conc_check_nargs(L, "l:addr", 0, 1);
    return push_address(L, l->b, 0, "addr");
}

static void close_listener(conc_sched_t *s, conc_listener_t *l)
{
    net_block_t *b = l->b;
    if (b == NULL)
        return;
    l->b = NULL;
    b->owner = NULL;
    if (s != NULL)
        wake_all(s, &l->acceptors, "accept");
    close_handles(b);
}

/***
 * Stops listening: tasks waiting in accept get code "closed". Closing again does nothing;
 * a listener that is collected is closed.
 * @treturn boolean true
 * @function close
 */
static int l_close(lua_State *L)
{
    conc_listener_t *l = checklistener(L, "l:close");
    conc_check_nargs(L, "l:close", 0, 1);
    close_listener(conc_sched_get(L), l);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    close_listener(NULL, (conc_listener_t *)lua_touserdata(L, 1));
    return 0;
}

static int l_tostring(lua_State *L)
{
    conc_listener_t *l = checklistener(L, "l:__tostring");
    lua_pushfstring(L, "listener#%d%s", (int)l->id, l->b == NULL ? " (closed)" : "");
    return 1;
}

/* net.listen(host, port [, opts]), documented in conc/net.lua */
static int l_listen(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    const char *host = checkhost(L, 1, "net.listen");
    int port = checkport(L, 2, "net.listen");
    int backlog = 511, rc;
    struct sockaddr_storage addr;
    conc_listener_t *l;
    conc_check_nargs(L, "net.listen", 3, 0);
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3))
            conc_argerror(L, "net.listen", 3, 3, "options table");
        lua_getfield(L, 3, "backlog");
        backlog = (int)checksize(L, -1, "net.listen", 3, 1, 511);
        lua_pop(L, 1);
    }
    lua_settop(L, 3);
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        host = "0.0.0.0";
    rc = numeric_addr(host, port, &addr);
    if (rc != 0) { /* a name: resolved here, synchronously, as listening does not wait */
        uv_getaddrinfo_t req;
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        rc = uv_getaddrinfo(s->loop, &req, NULL, host, NULL, &hints);
        if (rc != 0)
            return push_uv_error(L, rc, "listen");
        memcpy(&addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
        uv_freeaddrinfo(req.addrinfo);
        set_port(&addr, port);
    }
    l = (conc_listener_t *)conc_compat_newud(L, sizeof *l, 0);
    memset(l, 0, sizeof *l);
    l->tag = CONC_TAG(CONC_UP_LISTENER_MT);
    conc_waitq_init(&l->acceptors);
    l->acceptors.on_leave = acceptors_left;
    l->id = ++s->next_obj_id;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_LISTENER_MT));
    lua_setmetatable(L, -2);
    if ((l->b = new_block(s, l)) == NULL)
        return conc_error(L, "net.listen: out of memory");
    rc = uv_tcp_bind(&l->b->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->b->tcp, backlog, on_connection);
    if (rc != 0) {
        close_listener(NULL, l);
        return push_uv_error(L, rc, "listen");
    }
    uv_unref((uv_handle_t *)&l->b->tcp);
    return 1;
}

/* core.net_types(): the metatables of connections and listeners, whose methods
 * conc/net.lua wraps to turn (nil, code, message) into conc errors. */
static int l_net_types(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_CONN_MT));
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_LISTENER_MT));
    return 2;
}

const luaL_Reg conc_net_funcs[] = {
    {"net_listen", l_listen},
    {"net_connect", l_connect},
    {"net_types", l_net_types},
    {NULL, NULL}
};

const luaL_Reg conc_conn_methods[] = {
    {"read", c_read},
    {"read_line", c_read_line},
    {"read_exactly", c_read_exactly},
    {"write", c_write},
    {"close_write", c_close_write},
    {"close", c_close},
    {"peer", c_peer},
    {"addr", c_addr},
    {NULL, NULL}
};

const luaL_Reg conc_conn_metamethods[] = {
    {"__gc", c_gc},
    {"__tostring", c_tostring},
    {NULL, NULL}
};

const luaL_Reg conc_listener_methods[] = {
    {"accept", l_accept},
    {"addr", l_addr},
    {"close", l_close},
    {NULL, NULL}
};

const luaL_Reg conc_listener_metamethods[] = {
    {"__gc", l_gc},
    {"__tostring", l_tostring},
    {NULL, NULL}
};
