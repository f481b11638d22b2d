/*
 * chan.c: channels (conc.chan), with Go's mechanics (runtime/chan.go).
 *
 * Invariants: at most one of sendq/recvq is non-empty, except on an unbuffered channel
 * where one select waits to both send and receive; with cap > 0, len > 0 implies recvq is
 * empty and len < cap implies sendq is empty; a closed channel never reopens and never has
 * a waiting sender. Buffered values live in the channel's user value table at ring
 * position + 1 (see ring.h); a parked sender's value stays on its own stack (valslot) until
 * a receiver takes it. Matching is done by the running task, so a matched waiter's
 * operation is complete before it runs again (D2): its results are already on its stack.
 */
#include <string.h>
#include "conc.h"

/*** @module conc */

/*** Channels and select.
 * Any Lua value travels on a channel, `nil` and `false` included, by reference. Waiting
 * senders and receivers are served first come, first served.
 * @section channels
 */

static conc_chan_t *checkchan(lua_State *L, int idx, const char *fname)
{
    conc_chan_t *c = (conc_chan_t *)conc_checkud(L, idx, CONC_UP_CHAN_MT, sizeof(conc_chan_t));
    if (c == NULL)
        conc_argerror(L, fname, idx - 1, idx, "chan");
    return c;
}

conc_chan_t *conc_chan_new(lua_State *L, conc_sched_t *s, lua_Integer cap)
{
    conc_chan_t *c = (conc_chan_t *)conc_compat_newud(L, sizeof *c, CONC_CHAN_NUV);
    int idx, line;
    memset(c, 0, sizeof *c);
    c->tag = CONC_TAG(CONC_UP_CHAN_MT);
    conc_waitq_init(&c->recvq);
    conc_waitq_init(&c->sendq);
    conc_ring_init(&c->ring, (size_t)cap);
    c->id = ++s->next_obj_id;
    c->tnode.index = CONC_HEAP_NONE;
    c->tnode.kind = CONC_HEAP_TIMER;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_CHAN_MT));
    lua_setmetatable(L, -2);
    idx = lua_gettop(L);
    if (cap > 0) {
        lua_createtable(L, cap < 64 ? (int)cap : 64, 0);
        conc_compat_setuv(L, idx, CONC_CHAN_UV_BUF);
    }
    conc_push_site(L, &line);
    c->site_line = line;
    conc_compat_setuv(L, idx, CONC_CHAN_UV_SITE);
    return c;
}

/* Pushes onto the woken receiver w what its call returns for value v (at L's vidx), or
 * for a close (vidx == 0). Returns the count. */
static int push_received(lua_State *L, conc_waiter_t *w, int vidx)
{
    lua_State *co = ((conc_task_t *)w->owner)->co;
    if (w->caseno == CONC_CTX_CASE) /* only ever closed: the call's ctx ended */
        return conc_ctx_push_failure(L, (conc_task_t *)w->owner, w->objslot);
    lua_checkstack(co, 3);
    if (w->caseno == CONC_ITER_CASE) {
        if (vidx != 0 && lua_isnil(L, vidx)) {
            conc_sched_push_raise(co, "conc: ch:iter: received nil, which would end the for loop "
                                      "(receive with ch:recv() to get nil values)");
            return 2;
        }
        if (vidx == 0)
            lua_pushnil(co);
        else {
            lua_pushvalue(L, vidx);
            lua_xmove(L, co, 1);
        }
        return 1;
    }
    if (w->caseno > 0)
        lua_pushinteger(co, w->caseno);
    if (vidx == 0)
        lua_pushnil(co);
    else {
        lua_pushvalue(L, vidx);
        lua_xmove(L, co, 1);
    }
    lua_pushboolean(co, vidx != 0);
    return w->caseno > 0 ? 3 : 2;
}

int conc_chan_trysend(lua_State *L, conc_sched_t *s, conc_chan_t *c, int cidx, int vidx)
{
    conc_waiter_t *w = conc_waitq_pop(&c->recvq);
    if (w != NULL) { /* a waiting receiver takes the value directly, bypassing the buffer */
        conc_sched_wake(s, (conc_task_t *)w->owner, push_received(L, w, vidx));
        s->chan_ops++;
        return 1;
    }
    if (c->ring.len < c->ring.cap) {
        size_t pos = conc_ring_push(&c->ring);
        conc_compat_getuv(L, cidx, CONC_CHAN_UV_BUF);
        lua_pushvalue(L, vidx);
        lua_rawseti(L, -2, (int)pos + 1);
        lua_pop(L, 1);
        s->chan_ops++;
        return 1;
    }
    return 0;
}

int conc_chan_tryrecv(lua_State *L, conc_sched_t *s, conc_chan_t *c, int cidx)
{
    conc_waiter_t *w = conc_waitq_pop(&c->sendq);
    if (w != NULL) {
        conc_task_t *snd = (conc_task_t *)w->owner;
        lua_State *co = snd->co;
        lua_checkstack(co, 2);
        if (c->ring.cap == 0) {
            lua_pushvalue(co, w->valslot);
            lua_xmove(co, L, 1);
        } else {
            /* the buffer is full: take its head, and the sender's value goes to the tail */
            size_t pos = conc_ring_pop(&c->ring), tail;
            conc_compat_getuv(L, cidx, CONC_CHAN_UV_BUF);
            lua_rawgeti(L, -1, (int)pos + 1);
            tail = conc_ring_push(&c->ring);
            lua_pushvalue(co, w->valslot);
            lua_xmove(co, L, 1);
            lua_rawseti(L, -3, (int)tail + 1);
            lua_remove(L, -2);
        }
        if (w->caseno > 0)
            lua_pushinteger(co, w->caseno);
        else
            lua_pushboolean(co, 1);
        conc_sched_wake(s, snd, 1);
        s->chan_ops++;
        return CONC_RECV_VALUE;
    }
    if (c->ring.len > 0) {
        size_t pos = conc_ring_pop(&c->ring);
        conc_compat_getuv(L, cidx, CONC_CHAN_UV_BUF);
        lua_rawgeti(L, -1, (int)pos + 1);
        lua_pushnil(L);
        lua_rawseti(L, -3, (int)pos + 1); /* the slot no longer keeps the value alive */
        lua_remove(L, -2);
        s->chan_ops++;
        return CONC_RECV_VALUE;
    }
    return c->closed ? CONC_RECV_CLOSED : CONC_RECV_EMPTY;
}

/* Drops a buffered value nobody received (a stopped or reset timer's). */
void conc_chan_discard(lua_State *L, conc_chan_t *c, int cidx)
{
    while (c->ring.len > 0) {
        size_t pos = conc_ring_pop(&c->ring);
        conc_compat_getuv(L, cidx, CONC_CHAN_UV_BUF);
        lua_pushnil(L);
        lua_rawseti(L, -2, (int)pos + 1);
        lua_pop(L, 1);
    }
}

/* Pushes what recv returns for a conc_chan_tryrecv outcome r other than EMPTY (the value
 * is already on top for CONC_RECV_VALUE). */
static int push_recv(lua_State *L, int r)
{
    if (r == CONC_RECV_CLOSED)
        lua_pushnil(L);
    lua_pushboolean(L, r == CONC_RECV_VALUE);
    return 2;
}

/***
 * A new channel. With capacity 0 it is unbuffered: a send waits for a receiver (a
 * rendezvous). With capacity n it buffers up to n values, first in, first out.
 * @int[opt=0] cap the capacity, a whole number from 0 to 2^31-1
 * @treturn Channel the channel
 * @function chan
 */
static int l_chan(lua_State *L)
{
    lua_Integer cap = 0;
    conc_check_nargs(L, "chan", 1, 0);
    if (!lua_isnoneornil(L, 1)) {
        lua_Number n;
        if (lua_type(L, 1) != LUA_TNUMBER)
            return conc_argerror(L, "chan", 1, 1, "number");
        n = lua_tonumber(L, 1);
        if (!(n >= 0 && n <= 2147483647.0) || n != (lua_Number)(lua_Integer)n)
            return conc_error(L, "chan: bad argument #1 (capacity must be an integer from 0 to 2^31-1, got %s)",
                              lua_tostring(L, 1));
        cap = (lua_Integer)n;
    }
    conc_chan_new(L, conc_sched_get(L), cap);
    return 1;
}

/***
 * A channel, made by `conc.chan`. A timer's channel, or a ctx's `done()` channel, is an
 * ordinary channel that only conc sends on: sending on it or closing it raises.
 * @type Channel
 */

/***
 * Sends `v`, waiting until a receiver takes it or the buffer has room.
 * @param v the value (nil too)
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @treturn[1] boolean true once `v` was received or buffered
 * @return[2] nil when ctx ended first (`v` was not sent)
 * @return[2] `ctx:err()`
 * @raise `conc: send on closed channel`, also when the channel is closed while the send
 * waits
 * @function send
 */
static int ch_send(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_chan_t *c = checkchan(L, 1, "ch:send");
    conc_ctx_t *x = NULL;
    conc_task_t *t;
    int r;
    if (lua_gettop(L) != 2) { /* the common case, (ch, v), needs no more checks */
        if (lua_gettop(L) < 2)
            return conc_error(L, "ch:send: bad argument #1 (value expected)");
        conc_check_nargs(L, "ch:send", 2, 1);
        x = conc_ctx_opt(L, 3, "ch:send", 2);
    }
    if ((r = conc_ctx_failed(L, x, 0)) != 0) /* D1 */
        return r;
    if (c->recv_only)
        return conc_error(L, "ch:send: send on a receive-only channel");
    if (c->closed)
        return conc_error(L, "send on closed channel");
    if (conc_chan_trysend(L, s, c, 1, 2)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    t = conc_sched_parker(L, s, "ch:send");
    conc_task_wait_on(L, t, &c->sendq, 2, 0);
    conc_task_wait_ctx(L, t, x, 3);
    return conc_sched_park(L, s, t, CONC_WAIT_SEND);
}

/***
 * Receives a value, waiting until one is sent or the channel is closed.
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @return[1] the value
 * @treturn[1] boolean true
 * @return[2] nil once the channel is closed and its buffer drained
 * @treturn[2] boolean false
 * @return[3] nil when ctx ended first
 * @treturn[3] boolean false
 * @return[3] `ctx:err()`
 * @function recv
 */
static int ch_recv(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_chan_t *c = checkchan(L, 1, "ch:recv");
    conc_ctx_t *x = NULL;
    conc_task_t *t;
    int r;
    if (lua_gettop(L) != 1) {
        conc_check_nargs(L, "ch:recv", 1, 1);
        x = conc_ctx_opt(L, 2, "ch:recv", 1);
    }
    if ((r = conc_ctx_failed(L, x, 1)) != 0) /* D1 */
        return r;
    r = conc_chan_tryrecv(L, s, c, 1);
    if (r != CONC_RECV_EMPTY)
        return push_recv(L, r);
    t = conc_sched_parker(L, s, "ch:recv");
    conc_task_wait_on(L, t, &c->recvq, 0, 0);
    conc_task_wait_ctx(L, t, x, 2);
    return conc_sched_park(L, s, t, CONC_WAIT_RECV);
}

/***
 * Sends `v` only if that needs no wait (a receiver is waiting, or the buffer has room).
 * @param v the value (nil too)
 * @treturn boolean whether `v` was sent
 * @raise `conc: send on closed channel`
 * @function try_send
 */
static int ch_try_send(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:try_send");
    if (lua_gettop(L) < 2)
        return conc_error(L, "ch:try_send: bad argument #1 (value expected)");
    conc_check_nargs(L, "ch:try_send", 1, 1);
    if (c->recv_only)
        return conc_error(L, "ch:try_send: send on a receive-only channel");
    if (c->closed) /* C17: Go's non-blocking send panics on a closed channel too */
        return conc_error(L, "send on closed channel");
    lua_pushboolean(L, conc_chan_trysend(L, conc_sched_get(L), c, 1, 2));
    return 1;
}

/***
 * Receives a value only if one is there now.
 * @return[1] the value
 * @treturn[1] boolean true
 * @return[2] nil when the channel is closed and drained
 * @treturn[2] boolean false
 * @return[3] nil when no value is there yet
 * @treturn[3] boolean false
 * @treturn[3] string `"empty"`
 * @function try_recv
 */
static int ch_try_recv(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:try_recv");
    int r;
    conc_check_nargs(L, "ch:try_recv", 0, 1);
    r = conc_chan_tryrecv(L, conc_sched_get(L), c, 1);
    if (r != CONC_RECV_EMPTY)
        return push_recv(L, r);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "empty");
    return 3;
}

/* Closes c (not closed yet): every receiver gets (nil, false), every sender raises. */
void conc_chan_close(lua_State *L, conc_sched_t *s, conc_chan_t *c)
{
    conc_waiter_t *w;
    c->closed = 1;
    while ((w = conc_waitq_pop(&c->recvq)) != NULL)
        conc_sched_wake(s, (conc_task_t *)w->owner, push_received(L, w, 0));
    while ((w = conc_waitq_pop(&c->sendq)) != NULL) {
        conc_sched_push_raise(((conc_task_t *)w->owner)->co, "conc: send on closed channel");
        conc_sched_wake(s, (conc_task_t *)w->owner, 2);
    }
}

/***
 * Closes the channel: the values in its buffer can still be received, then every receive
 * returns `nil, false`. Every waiting receiver is woken with `nil, false`, and every
 * waiting sender raises, as future senders will.
 * @raise when the channel is already closed (or is receive-only)
 * @function close
 */
static int ch_close(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:close");
    conc_check_nargs(L, "ch:close", 0, 1);
    if (c->recv_only)
        return conc_error(L, "ch:close: close of a receive-only channel");
    if (c->closed)
        return conc_error(L, "close of closed channel");
    conc_chan_close(L, conc_sched_get(L), c);
    return 0;
}

/* __len: Lua passes the channel twice (5.2+), so no argument count is checked here. */
static int ch_mlen(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:__len");
    lua_pushinteger(L, (lua_Integer)c->ring.len);
    return 1;
}

/***
 * The number of values in the buffer (also `#ch`).
 * @treturn integer the buffered count
 * @function len
 */
static int ch_len(lua_State *L)
{
    checkchan(L, 1, "ch:len");
    conc_check_nargs(L, "ch:len", 0, 1);
    return ch_mlen(L);
}

/***
 * The capacity given to `conc.chan`.
 * @treturn integer the capacity
 * @function cap
 */
static int ch_cap(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:cap");
    conc_check_nargs(L, "ch:cap", 0, 1);
    lua_pushinteger(L, (lua_Integer)c->ring.cap);
    return 1;
}

/* The iterator of ch:iter(): upvalue CONC_NUP + 1 is the channel, + 2 the ctx. */
static int ch_iter_next(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_chan_t *c = (conc_chan_t *)lua_touserdata(L, lua_upvalueindex(CONC_NUP + 1));
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, lua_upvalueindex(CONC_NUP + 2));
    conc_task_t *t;
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(CONC_NUP + 1));
    lua_pushvalue(L, lua_upvalueindex(CONC_NUP + 2));
    if (x != NULL && conc_ctx_is_done(x)) /* the loop ends once the ctx is done */
        return 0;
    switch (conc_chan_tryrecv(L, s, c, 1)) {
    case CONC_RECV_VALUE:
        if (lua_isnil(L, -1))
            return conc_error(L, "ch:iter: received nil, which would end the for loop "
                                 "(receive with ch:recv() to get nil values)");
        return 1;
    case CONC_RECV_CLOSED:
        return 0;
    default:
        break;
    }
#if CONC_PUC51
    if (s->current != NULL)
        return conc_error(L, "ch:iter: cannot block inside a for-in loop on Lua 5.1 "
                             "(use: while true do local v, ok = ch:recv() if not ok then break end ... end)");
#endif
    t = conc_sched_parker(L, s, "ch:iter");
    conc_task_wait_on(L, t, &c->recvq, 0, CONC_ITER_CASE);
    conc_task_wait_ctx(L, t, x, 2);
    return conc_sched_park(L, s, t, CONC_WAIT_RECV);
}

/***
 * An iterator that receives until the channel is closed and drained, or until ctx ends:
 * `for v in ch:iter() do print(v) end`. A `for` loop would end at a nil value,
 * so the iterator raises when it receives one: use `Channel:recv` when nil travels. On Lua
 * 5.1 a task cannot block inside a `for` iterator: the iterator raises when it would
 * wait there (loop on `Channel:recv` instead).
 * @tparam[opt] Context ctx ends the loop when it ends
 * @treturn function the iterator
 * @function iter
 */
static int ch_iter(lua_State *L)
{
    int i;
    checkchan(L, 1, "ch:iter");
    conc_check_nargs(L, "ch:iter", 1, 1);
    conc_ctx_opt(L, 2, "ch:iter", 1);
    lua_settop(L, 2);
    for (i = 1; i <= CONC_NUP; i++)
        lua_pushvalue(L, lua_upvalueindex(i));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, ch_iter_next, CONC_NUP + 2);
    return 1;
}

static int ch_tostring(lua_State *L)
{
    conc_chan_t *c = checkchan(L, 1, "ch:__tostring");
    lua_pushfstring(L, "chan#%d (cap %d)", (int)c->id, (int)c->ring.cap);
    return 1;
}

static int ch_gc(lua_State *L)
{
    conc_chan_t *c = (conc_chan_t *)lua_touserdata(L, 1);
    conc_heap_remove(&conc_sched_get(L)->timers, &c->tnode);
    /* parked waiters keep their channel reachable, so these queues are empty; unlink
     * anything left all the same rather than leave a pointer to freed memory */
    while (conc_waitq_pop(&c->recvq) != NULL)
        ;
    while (conc_waitq_pop(&c->sendq) != NULL)
        ;
    return 0;
}

const luaL_Reg conc_chan_funcs[] = {
    {"chan", l_chan},
    {NULL, NULL}
};

const luaL_Reg conc_chan_methods[] = {
    {"send", ch_send},
    {"recv", ch_recv},
    {"try_send", ch_try_send},
    {"try_recv", ch_try_recv},
    {"close", ch_close},
    {"len", ch_len},
    {"cap", ch_cap},
    {"iter", ch_iter},
    {NULL, NULL}
};

const luaL_Reg conc_chan_metamethods[] = {
    {"__len", ch_mlen},
    {"__tostring", ch_tostring},
    {"__gc", ch_gc},
    {NULL, NULL}
};
