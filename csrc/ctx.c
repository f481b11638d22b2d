/*
 * ctx.c: contexts (conc.ctx), after Go's context package: background, with_cancel,
 * with_deadline, with_timeout; ctx:done(), err(), cause(), deadline().
 *
 * Ownership and invariants:
 * - Each ctx has its done channel (user value DONE), made with it, receive-only (D9), and
 *   closed exactly once, when the ctx is cancelled. conc.background() has one that never
 *   closes. The done channel keeps its ctx alive (its OWNER slot), so a ctx whose deadline
 *   is pending stays alive while anyone can still wait on it.
 * - A cancellable child is in its parent's CHILDREN table until it is cancelled; cancelling
 *   removes it from there, so a long-lived parent does not grow with cancelled children.
 *   The child holds its parent (PARENT) to unlink itself.
 * - Cancelling sets err and cause (err() and cause() are stable afterwards), removes the
 *   deadline, closes done (which wakes every task waiting on this ctx in the same turn)
 *   and cancels every child with the same err and cause. Cancelling again does nothing.
 * - A deadline lives in the scheduler's timer heap; the scheduler finds the ctx through
 *   the weak table it uses for timers.
 * - A blocking call given a ctx parks one more waiter, on the done channel (caseno
 *   CONC_CTX_CASE, object slot = the ctx's stack index); closing done wakes it with the
 *   call's failure results (see conc_ctx_push_failure).
 */
#include <math.h>
#include <string.h>
#include "conc.h"

enum { UV_DONE = 1, UV_ERR, UV_CAUSE, UV_CHILDREN, UV_PARENT, NUV = 5 };

/* arg counts from the caller's view: 0 for self (a method), 1 for a parent argument */
static conc_ctx_t *checkctx(lua_State *L, int idx, const char *fname, int arg)
{
    conc_ctx_t *x = (conc_ctx_t *)conc_checkud(L, idx, CONC_UP_CTX_MT, sizeof(conc_ctx_t));
    if (x == NULL)
        conc_argerror(L, fname, arg, idx, "ctx");
    return x;
}

conc_ctx_t *conc_ctx_opt(lua_State *L, int idx, const char *fname, int arg)
{
    conc_ctx_t *x;
    if (lua_isnoneornil(L, idx))
        return NULL;
    x = (conc_ctx_t *)conc_checkud(L, idx, CONC_UP_CTX_MT, sizeof(conc_ctx_t));
    if (x == NULL)
        conc_argerror(L, fname, arg, idx, "ctx");
    return x;
}

/* Cancels the ctx at idx with the error at erridx and the cause at causeidx (nil: the
 * error), then its children, and unlinks it from its parent. */
static void cancel(lua_State *L, conc_sched_t *s, int idx, int erridx, int causeidx)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, idx);
    int top = lua_gettop(L);
    if (x->done || !x->cancellable)
        return;
    luaL_checkstack(L, 8, NULL);
    if (lua_isnil(L, causeidx))
        causeidx = erridx;
    x->done = 1;
    conc_heap_remove(&s->timers, &x->tnode);
    lua_pushvalue(L, erridx);
    conc_compat_setuv(L, idx, UV_ERR);
    lua_pushvalue(L, causeidx);
    conc_compat_setuv(L, idx, UV_CAUSE);
    conc_compat_getuv(L, idx, UV_DONE);
    conc_chan_close(L, s, x->donech);
    lua_pop(L, 1);
    conc_compat_getuv(L, idx, UV_CHILDREN);
    if (lua_istable(L, -1)) {
        int children = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, children) != 0) { /* children clear their own entries: allowed */
            lua_pop(L, 1);
            cancel(L, s, lua_gettop(L), erridx, causeidx);
        }
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    conc_compat_setuv(L, idx, UV_CHILDREN);
    conc_compat_getuv(L, idx, UV_PARENT);
    if (!lua_isnil(L, -1)) {
        conc_compat_getuv(L, -1, UV_CHILDREN);
        if (lua_istable(L, -1)) {
            lua_pushvalue(L, idx);
            lua_pushnil(L);
            lua_rawset(L, -3);
        }
    }
    lua_settop(L, top);
}

/* Pushes a new ctx under the parent at pidx (0: the root). */
static conc_ctx_t *new_ctx(lua_State *L, conc_sched_t *s, int pidx, int cancellable)
{
    conc_ctx_t *x = (conc_ctx_t *)conc_compat_newud(L, sizeof *x, NUV);
    conc_ctx_t *p = pidx ? (conc_ctx_t *)lua_touserdata(L, pidx) : NULL;
    int idx;
    memset(x, 0, sizeof *x);
    x->tag = CONC_TAG(CONC_UP_CTX_MT);
    x->cancellable = cancellable;
    x->deadline = p ? p->deadline : HUGE_VAL;
    x->tnode.index = CONC_HEAP_NONE;
    x->tnode.kind = CONC_HEAP_CTX;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_CTX_MT));
    lua_setmetatable(L, -2);
    idx = lua_gettop(L);
    x->donech = conc_chan_new(L, s, 0);
    x->donech->recv_only = 1;
    lua_pushvalue(L, idx);
    conc_compat_setuv(L, -2, CONC_CHAN_UV_OWNER);
    conc_compat_setuv(L, idx, UV_DONE);
    if (p == NULL || !cancellable)
        return x;
    lua_pushvalue(L, pidx);
    conc_compat_setuv(L, idx, UV_PARENT);
    if (p->done) { /* a child of a cancelled ctx is born cancelled, with its parent's err */
        conc_compat_getuv(L, pidx, UV_ERR);
        conc_compat_getuv(L, pidx, UV_CAUSE);
        cancel(L, s, idx, idx + 1, idx + 2);
        lua_pop(L, 2);
    } else if (p->cancellable) {
        conc_compat_getuv(L, pidx, UV_CHILDREN);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            conc_compat_setuv(L, pidx, UV_CHILDREN);
        }
        lua_pushvalue(L, idx);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    return x;
}

/* The cancel function of a ctx: upvalue CONC_NUP + 1 is the ctx. cancel([cause]). */
static int l_cancel(lua_State *L)
{
    conc_check_nargs(L, "cancel", 1, 0);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(CONC_NUP + 1));
    conc_push_hook(L, "canceled");
    cancel(L, conc_sched_get(L), 2, 3, 1);
    return 0;
}

/* Returns ctx (at idx) and its cancel function. */
static int push_cancel(lua_State *L, int idx)
{
    int i;
    lua_pushvalue(L, idx);
    for (i = 1; i <= CONC_NUP; i++)
        lua_pushvalue(L, lua_upvalueindex(i));
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, l_cancel, CONC_NUP + 1);
    return 2;
}

static int l_background(lua_State *L)
{
    conc_check_nargs(L, "background", 0, 0);
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_BACKGROUND);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        new_ctx(L, conc_sched_get(L), 0, 0);
        lua_pushvalue(L, -1);
        conc_compat_setuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_BACKGROUND);
    }
    return 1;
}

static int l_with_cancel(lua_State *L)
{
    conc_check_nargs(L, "with_cancel", 1, 0);
    checkctx(L, 1, "with_cancel", 1);
    new_ctx(L, conc_sched_get(L), 1, 1);
    return push_cancel(L, lua_gettop(L));
}

/* with_deadline(parent, t [, cause]): the deadline is the earlier of the parent's and t. */
static int with_deadline(lua_State *L, const char *fname, double t)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *p = (conc_ctx_t *)lua_touserdata(L, 1), *x;
    int idx;
    lua_settop(L, 3);
    x = new_ctx(L, s, 1, 1);
    idx = lua_gettop(L);
    if (x->done || p->deadline <= t) /* the parent's deadline comes first: it cancels us */
        return push_cancel(L, idx);
    x->deadline = t;
    lua_pushvalue(L, 3);
    conc_compat_setuv(L, idx, UV_CAUSE); /* the cause given for the deadline, until done */
    if (t <= conc_sched_now(s)) {
        conc_push_hook(L, "deadline_exceeded");
        cancel(L, s, idx, idx + 1, 3);
        lua_pop(L, 1);
        return push_cancel(L, idx);
    }
    if (conc_heap_reserve(&s->timers, s->timers.len + 1) != 0)
        return conc_error(L, "%s: out of memory", fname);
    conc_sched_track(L, x, idx);
    x->tnode.deadline = t;
    conc_heap_push(&s->timers, &x->tnode);
    return push_cancel(L, idx);
}

static int l_with_deadline(lua_State *L)
{
    conc_check_nargs(L, "with_deadline", 3, 0);
    checkctx(L, 1, "with_deadline", 1);
    return with_deadline(L, "with_deadline", conc_checkduration(L, 2, "with_deadline", 2));
}

static int l_with_timeout(lua_State *L)
{
    double d;
    conc_check_nargs(L, "with_timeout", 3, 0);
    checkctx(L, 1, "with_timeout", 1);
    d = conc_checkduration(L, 2, "with_timeout", 2);
    return with_deadline(L, "with_timeout", conc_sched_now(conc_sched_get(L)) + d);
}

/* The scheduler's timer heap says x's deadline has come. */
void conc_ctx_fire(conc_sched_t *s, lua_State *L, conc_ctx_t *x)
{
    int top = lua_gettop(L);
    if (conc_sched_find(L, x)) { /* else: being collected */
        conc_push_hook(L, "deadline_exceeded");
        conc_compat_getuv(L, top + 1, UV_CAUSE);
        cancel(L, s, top + 1, top + 2, top + 3);
    }
    lua_settop(L, top);
}

/* Pushes onto the woken task t what its blocking call returns because the ctx at slot
 * ctxslot of its stack ended: recv (nil, false, err); an iterator nothing (the loop ends);
 * send, sleep and wait (nil, err). Returns the count. */
int conc_ctx_push_failure(conc_task_t *t, int ctxslot)
{
    lua_State *co = t->co;
    lua_checkstack(co, 4);
    if (t->reason == CONC_WAIT_RECV && t->waiters[0].caseno == CONC_ITER_CASE)
        return 0;
    lua_pushnil(co);
    if (t->reason == CONC_WAIT_RECV)
        lua_pushboolean(co, 0);
    conc_compat_getuv(co, ctxslot, UV_ERR);
    return t->reason == CONC_WAIT_RECV ? 3 : 2;
}

/* D1: when the ctx at idx is done on entry, pushes what the call returns then, (nil, err),
 * or (nil, false, err) for a receive, and returns the count; else returns 0. */
int conc_ctx_failed(lua_State *L, conc_ctx_t *x, int idx, int is_recv)
{
    if (x == NULL || !x->done)
        return 0;
    lua_pushnil(L);
    if (is_recv)
        lua_pushboolean(L, 0);
    conc_compat_getuv(L, idx, UV_ERR);
    return is_recv ? 3 : 2;
}

void conc_task_wait_ctx(lua_State *L, conc_task_t *t, conc_ctx_t *x, int ctxslot)
{
    conc_waiter_t *w;
    if (x == NULL || !x->cancellable)
        return; /* never done: nothing to wait for */
    w = conc_task_waiters(L, t, t->nwait + 1) + t->nwait;
    w->home = &x->donech->recvq;
    w->owner = t;
    w->objslot = ctxslot;
    w->valslot = 0;
    w->caseno = CONC_CTX_CASE;
    t->nwait++;
}

static int x_done(lua_State *L)
{
    checkctx(L, 1, "ctx:done", 0);
    conc_check_nargs(L, "ctx:done", 0, 1);
    conc_compat_getuv(L, 1, UV_DONE);
    return 1;
}

/* err() and cause(): the value in user value slot uv once the ctx is done, else nothing. */
static int push_once_done(lua_State *L, const char *fname, int uv)
{
    conc_ctx_t *x = checkctx(L, 1, fname, 0);
    conc_check_nargs(L, fname, 0, 1);
    if (!x->done)
        return 0;
    conc_compat_getuv(L, 1, uv);
    return 1;
}

static int x_err(lua_State *L)
{
    return push_once_done(L, "ctx:err", UV_ERR);
}

static int x_cause(lua_State *L)
{
    return push_once_done(L, "ctx:cause", UV_CAUSE);
}

static int x_deadline(lua_State *L)
{
    conc_ctx_t *x = checkctx(L, 1, "ctx:deadline", 0);
    conc_check_nargs(L, "ctx:deadline", 0, 1);
    if (x->deadline == HUGE_VAL)
        return 0;
    lua_pushnumber(L, x->deadline);
    return 1;
}

static int x_tostring(lua_State *L)
{
    conc_ctx_t *x = checkctx(L, 1, "ctx:__tostring", 0);
    lua_pushfstring(L, "ctx on chan#%d%s", (int)x->donech->id, x->done ? " (done)" : "");
    return 1;
}

static int x_gc(lua_State *L)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, 1);
    conc_heap_remove(&conc_sched_get(L)->timers, &x->tnode);
    return 0;
}

const luaL_Reg conc_ctx_funcs[] = {
    {"background", l_background},
    {"with_cancel", l_with_cancel},
    {"with_deadline", l_with_deadline},
    {"with_timeout", l_with_timeout},
    {NULL, NULL}
};

const luaL_Reg conc_ctx_methods[] = {
    {"done", x_done},
    {"err", x_err},
    {"cause", x_cause},
    {"deadline", x_deadline},
    {NULL, NULL}
};

const luaL_Reg conc_ctx_metamethods[] = {
    {"__tostring", x_tostring},
    {"__gc", x_gc},
    {NULL, NULL}
};
