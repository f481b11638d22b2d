/*
 * select.c: conc.select, conc.send (a send case) and conc.default, after Go's selectgo.
 *
 * Pass 1 looks at every case and picks one uniformly at random among the ready ones
 * (reservoir sampling: the k-th ready case replaces the choice with probability 1/k), then
 * performs exactly that one. With none ready, conc.default wins if present. Pass 2 parks
 * one waiter per case, all owned by the same task; the first case to fire wakes the task,
 * and waking unlinks every other waiter at once (pass 3), so a quiet channel never keeps
 * stale waiters and a select never completes twice. A select cannot meet itself: its own
 * waiters are linked only while it is parked, and a parked task matches nothing.
 *
 * Case values are evaluated once, by Lua, when select is called (S11); a send case's
 * channel and value are pushed onto the frame, so they stay on the parked task's stack.
 */
#include <stdlib.h>
#include "conc.h"

/*** @module conc */

/*** Channels and select.
 * @section channels
 */

enum { CONC_OP_RECV = 1, CONC_OP_SEND = 2 };

struct conc_case {
    int pos;   /* argument position, returned as the case's index */
    int op;    /* CONC_OP_RECV or CONC_OP_SEND */
    conc_chan_t *c;
    int cslot; /* stack index of the channel */
    int vslot; /* stack index of a send case's value */
};

static struct conc_case *cases(lua_State *L, conc_sched_t *s, int n)
{
    if ((size_t)n > s->ncases_cap) {
        struct conc_case *c = realloc(s->cases, (size_t)n * sizeof *c);
        if (c == NULL)
            conc_error(L, "select: out of memory");
        s->cases = c;
        s->ncases_cap = (size_t)n;
    }
    return s->cases;
}

static int is_sendcase(lua_State *L, int idx)
{
    int ok;
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    ok = lua_rawequal(L, -1, lua_upvalueindex(CONC_UP_SENDCASE_MT));
    lua_pop(L, 1);
    return ok;
}

static int ready(const struct conc_case *k)
{
    const conc_chan_t *c = k->c;
    if (k->op == CONC_OP_RECV)
        return c->ring.len > 0 || c->sendq.head != NULL || c->closed;
    return c->closed || c->recvq.head != NULL || c->ring.len < c->ring.cap;
}

/***
 * Waits until one of the cases can proceed and performs exactly that one. A case is a
 * channel (receive from it), `conc.send(ch, v)` (send `v` on `ch`), nil (never ready, like
 * Go's nil channel) or `conc.default` (at most one: when no case is ready, the select
 * returns its position instead of waiting). When several cases are ready, one of them is
 * chosen uniformly at random. The cases are evaluated once, when `select` is called; with
 * no case at all it waits for ever.
 * @param ... the cases
 * @treturn integer the position of the case performed, among the arguments
 * @return for a receive case: the value received, or nil once that channel is closed
 * @treturn boolean for a receive case: true for a value, false once that channel is closed
 * @raise `conc: send on closed channel` when a send case is chosen on a closed channel
 * @function select
 */
static int l_select(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    int n = lua_gettop(L), i, k = 0, dflt = 0, chosen = -1, nready = 0;
    struct conc_case *cs = cases(L, s, n > 0 ? n : 1);
    conc_waiter_t *w;
    conc_task_t *t;
    /* a C function may push LUA_MINSTACK values: enough for a few cases, the results
     * and the park's mark; more cases push two values per send case */
    if (n > 6)
        luaL_checkstack(L, 2 * n + 4, "too many select cases");
    for (i = 1; i <= n; i++) {
        conc_chan_t *c;
        switch (lua_type(L, i)) {
        case LUA_TNIL:
            continue; /* S4: a nil case is never ready */
        case LUA_TUSERDATA:
            if ((c = (conc_chan_t *)conc_checkud(L, i, CONC_UP_CHAN_MT, sizeof(conc_chan_t))) == NULL)
                break;
            cs[k].pos = i;
            cs[k].op = CONC_OP_RECV;
            cs[k].c = c;
            cs[k].cslot = i;
            cs[k].vslot = 0;
            k++;
            continue;
        case LUA_TTABLE:
            if (lua_rawequal(L, i, lua_upvalueindex(CONC_UP_DEFAULT))) {
                if (dflt)
                    return conc_error(L, "select: more than one conc.default (arguments #%d and #%d)", dflt, i);
                dflt = i;
                continue;
            }
            if (!is_sendcase(L, i))
                break;
            lua_rawgeti(L, i, 1);
            cs[k].cslot = lua_gettop(L);
            cs[k].c = (conc_chan_t *)conc_checkud(L, -1, CONC_UP_CHAN_MT, sizeof(conc_chan_t));
            if (cs[k].c == NULL)
                break;
            if (cs[k].c->recv_only)
                return conc_error(L, "select: send on a receive-only channel (argument #%d)", i);
            lua_rawgeti(L, i, 2);
            cs[k].vslot = lua_gettop(L);
            cs[k].pos = i;
            cs[k].op = CONC_OP_SEND;
            k++;
            continue;
        default:
            break;
        }
        return conc_argerror(L, "select", i, i, "chan, conc.send(ch, v), conc.default or nil");
    }
    /* pass 1 */
    for (i = 0; i < k; i++)
        if (ready(&cs[i]) && (++nready == 1 || conc_rand(s) % (uint64_t)nready == 0))
            chosen = i;
    if (chosen >= 0) {
        struct conc_case *c = &cs[chosen];
        int pos = c->pos;
        if (c->op == CONC_OP_SEND) {
            if (c->c->closed) /* D8: a send case on a closed channel is ready, and raises */
                return conc_error(L, "send on closed channel");
            conc_chan_trysend(L, s, c->c, c->cslot, c->vslot);
            lua_pushinteger(L, pos);
            return 1;
        }
        lua_pushinteger(L, pos);
        if (conc_chan_tryrecv(L, s, c->c, c->cslot) == CONC_RECV_VALUE) {
            lua_pushboolean(L, 1);
        } else {
            lua_pushnil(L);
            lua_pushboolean(L, 0);
        }
        return 3;
    }
    if (dflt) {
        lua_pushinteger(L, dflt);
        return 1;
    }
    /* pass 2; with no case at all this parks forever, as Go's select {} does */
    t = conc_sched_parker(L, s, "select");
    w = conc_task_waiters(L, t, k > 0 ? k : 1);
    for (i = 0; i < k; i++) {
        w[i].home = cs[i].op == CONC_OP_RECV ? &cs[i].c->recvq : &cs[i].c->sendq;
        w[i].owner = t;
        w[i].objslot = cs[i].cslot;
        w[i].valslot = cs[i].vslot;
        w[i].caseno = cs[i].pos;
    }
    t->nwait = k;
    return conc_sched_park(L, s, t, CONC_WAIT_SELECT);
}

/***
 * A send case for `conc.select`: sends `v` on `ch` if the select chooses it. Making it
 * sends nothing.
 * @tparam Channel ch the channel
 * @param v the value (nil too)
 * @return the case
 * @function send
 */

static int l_send(lua_State *L)
{
    conc_chan_t *c = (conc_chan_t *)conc_checkud(L, 1, CONC_UP_CHAN_MT, sizeof(conc_chan_t));
    if (c == NULL)
        return conc_argerror(L, "send", 1, 1, "chan");
    if (lua_gettop(L) < 2)
        return conc_error(L, "send: bad argument #2 (value expected)");
    conc_check_nargs(L, "send", 2, 0);
    if (c->recv_only)
        return conc_error(L, "send: send on a receive-only channel");
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_SENDCASE_MT));
    lua_setmetatable(L, -2);
    return 1;
}

/***
 * A case for `conc.select` that makes it non-blocking: when no other case is ready, the
 * select returns the position of `conc.default` at once.
 * @value default
 */

const luaL_Reg conc_select_funcs[] = {
    {"select", l_select},
    {"send", l_send},
    {NULL, NULL}
};
