/*
 * ctx.c: contexts (conc.ctx), after Go's context package: background, with_cancel,
 * with_deadline, with_timeout, with_value, without_cancel, after_func; ctx:done(), err(),
 * cause(), deadline(), value().
 *
 * Kinds and invariants:
 * - A CANCEL ctx (with_cancel, with_deadline, with_timeout) is its own *source*: it holds
 *   done, err and cause. A VALUE ctx reports its parent's source (x->src, kept alive by
 *   its SRC slot and its parent chain). ROOT (background) and DETACHED (without_cancel)
 *   ctxs, and VALUE ctxs above them, have no source: they are never done.
 * - A source's done channel is made on first use (ctx:done() or a wait), as Go makes it
 *   lazily: most contexts are cancelled without anyone waiting. It is receive-only (D9),
 *   closed exactly once, and it keeps its ctx alive (the channel's OWNER slot). A ctx
 *   without a source answers done() with background's channel, which never closes.
 * - A CANCEL ctx whose parent has a source is in that source's CHILDREN table (child ->
 *   true) until it is cancelled; it keeps that table in its SIBLINGS slot to unlink itself,
 *   so a long-lived parent does not grow with cancelled children (X9). after_func entries
 *   live in the same table (a unique key -> fn).
 * - Cancelling sets err and cause (stable afterwards), removes the deadline, closes done
 *   (waking every task waiting on this ctx in the same turn), cancels every child with the
 *   same err and cause, starts the after_func tasks and unlinks the ctx from its parent.
 *   Cancelling again does nothing. No user code runs during the cascade (after_func
 *   functions run later, in their own tasks), so the tables cannot change under it.
 * - A deadline lives in the scheduler's timer heap; the scheduler finds the ctx through
 *   the weak table it uses for timers.
 * - A blocking call given a ctx parks one more waiter, on the source's done channel (caseno
 *   CONC_CTX_CASE, object slot = the ctx's stack index); closing done wakes it with the
 *   call's failure results (see conc_ctx_push_failure).
 */
#include <math.h>
#include <string.h>
#include "conc.h"

/*** @module conc */

/*** Contexts.
 * After Go's `context` package, a ctx carries a cancellation signal, a deadline and
 * values down a tree of calls. Cancelling a ctx cancels its whole subtree at once, never
 * its parent, with the same err and cause, and closes each done channel exactly once.
 * Call a ctx's `cancel` when you are done with it: that releases its timer and its place
 * in the parent.
 * @section contexts
 */

enum { CTX_ROOT, CTX_CANCEL, CTX_VALUE, CTX_DETACHED };

/* User value slots. A CANCEL ctx uses DONE, CAUSE and CHILDREN; a VALUE ctx uses the same
 * slots as SRC, KEY and VALUE. A source's err is its `done` field: one of these. */
enum { UV_DONE = 1, UV_PARENT, UV_CAUSE, UV_CHILDREN, NUV = 4 };
#define UV_SRC UV_DONE
#define UV_KEY UV_CAUSE
#define UV_VALUE UV_CHILDREN
enum { CANCELED = 1, DEADLINE_EXCEEDED = 2 };

/* The cancel function's upvalues: those of conc.core up to the task metatable (cancelling
 * may start after_func tasks), then the ctx. */
#define CANCEL_NUP (CONC_UP_TASK_MT + 1)

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
    if (lua_isnoneornil(L, idx))
        return NULL;
    return checkctx(L, idx, fname, arg);
}

/* Pushes the source of the ctx at idx (nil when it has none) and returns it. */
static conc_ctx_t *push_source(lua_State *L, int idx)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, idx);
    if (x->src == x)
        lua_pushvalue(L, idx);
    else if (x->src != NULL)
        conc_compat_getuv(L, idx, UV_SRC);
    else
        lua_pushnil(L);
    return x->src;
}

/* Pushes err: CANCELED or DEADLINE_EXCEEDED as the Lua value init.lua gave (set_hooks).
 * L runs a conc.core function (or a cancel function): the scheduler is its upvalue. */
static void push_err(lua_State *L, int err)
{
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED),
                      err == CANCELED ? CONC_SCHED_UV_CANCELED : CONC_SCHED_UV_DEADLINE);
}

/* Pushes the cause of the ctx at idx, whose source is done: the cause given, else err. */
static void push_cause(lua_State *L, int idx)
{
    conc_ctx_t *src = push_source(L, idx);
    conc_compat_getuv(L, -1, UV_CAUSE);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        push_err(L, src->done);
    }
}

/* The done channel of the source at idx, made now if it is not yet. */
static conc_chan_t *source_done(lua_State *L, conc_sched_t *s, int idx)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, idx);
    if (x->donech == NULL) {
        idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
        x->donech = conc_chan_new(L, s, 0);
        x->donech->recv_only = 1;
        x->donech->closed = x->done != 0;
        lua_pushvalue(L, idx);
        conc_compat_setuv(L, -2, CONC_CHAN_UV_OWNER);
        conc_compat_setuv(L, idx, UV_DONE);
    }
    return x->donech;
}

static conc_ctx_t *new_ctx(lua_State *L, conc_sched_t *s, int pidx, int kind);

static void push_background(lua_State *L, conc_sched_t *s)
{
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_BACKGROUND);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        new_ctx(L, s, 0, CTX_ROOT);
        lua_pushvalue(L, -1);
        conc_compat_setuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_BACKGROUND);
    }
}

/* Removes the CANCEL ctx at idx from its parent's source's CHILDREN, if it is there. */
static void unlink_child(lua_State *L, int idx)
{
    conc_compat_getuv(L, idx, UV_PARENT);
    if (lua_isnil(L, -1) || push_source(L, lua_gettop(L)) == NULL) {
        lua_pop(L, 2);
        return;
    }
    conc_compat_getuv(L, -1, UV_CHILDREN);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, idx);
        lua_pushnil(L);
        lua_rawset(L, -3);
    }
    lua_pop(L, 3);
}

/* Cancels the one ctx at idx (not yet done, its own source): sets err and cause, removes
 * its deadline and closes done. Pushes its CHILDREN table, now detached, and returns 1, or
 * pushes nothing and returns 0 when it has none. */
static int cancel_one(lua_State *L, conc_sched_t *s, int idx, int err, int causeidx)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, idx);
    x->done = (unsigned char)err;
    conc_heap_remove(&s->timers, &x->tnode);
    lua_pushvalue(L, causeidx);
    conc_compat_setuv(L, idx, UV_CAUSE);
    if (x->donech != NULL) {
        conc_compat_getuv(L, idx, UV_DONE);
        conc_chan_close(L, s, x->donech);
        lua_pop(L, 1);
    }
    conc_compat_getuv(L, idx, UV_CHILDREN);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    conc_compat_setuv(L, idx, UV_CHILDREN);
    return 1;
}

/* Takes the children table on top of the stack: starts its after_func tasks and appends
 * its child contexts to the work list at `work` (n entries so far). Returns the new n. */
static int take_children(lua_State *L, conc_sched_t *s, int work, int n)
{
    int children = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, children) != 0) {
        if (lua_isfunction(L, -1)) { /* an after_func entry: run it in its own task */
            conc_task_spawn(L, s, lua_gettop(L), 1);
            lua_pop(L, 2);
        } else {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, work, ++n);
        }
    }
    lua_pop(L, 1);
    return n;
}

/* Cancels the ctx at idx with err (CANCELED or DEADLINE_EXCEEDED) and the cause at causeidx
 * (nil: err), then its whole subtree with the same err and cause, starts the after_func
 * tasks, and unlinks it from its parent. The subtree is walked with a work list, not by
 * recursion, so a deep chain of contexts needs no deep C stack. */
static void cancel(lua_State *L, conc_sched_t *s, int idx, int err, int causeidx)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, idx);
    int top = lua_gettop(L), work, n, i;
    if (x->done || x->src != x)
        return;
    luaL_checkstack(L, 8, NULL);
    unlink_child(L, idx);
    if (!cancel_one(L, s, idx, err, causeidx))
        return;
    lua_newtable(L);
    work = lua_gettop(L);
    lua_insert(L, work - 1); /* the work list below the children table */
    work--;
    n = take_children(L, s, work, 0);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, work, i);
        lua_pushnil(L);
        lua_rawseti(L, work, i); /* let the cancelled ones go as we walk */
        x = (conc_ctx_t *)lua_touserdata(L, -1);
        /* a child left by the cascade needs no unlink: its parent's table is dropped */
        if (!x->done && cancel_one(L, s, lua_gettop(L), err, causeidx))
            n = take_children(L, s, work, n);
        lua_pop(L, 1);
    }
    lua_settop(L, top);
}

/* Pushes the CHILDREN table of the source at idx, made now if it is not yet. */
static void push_children(lua_State *L, int idx)
{
    conc_compat_getuv(L, idx, UV_CHILDREN);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        conc_compat_setuv(L, idx, UV_CHILDREN);
    }
}

/* A new CANCEL ctx at idx joins its parent's source at pidx: born cancelled if that source
 * is done (X8), else registered as its child. */
static void link_child(lua_State *L, conc_sched_t *s, int idx, int pidx)
{
    conc_ctx_t *p = push_source(L, pidx);
    int src = lua_gettop(L);
    if (p == NULL) {
        lua_pop(L, 1);
        return;
    }
    if (p->done) {
        conc_compat_getuv(L, src, UV_CAUSE);
        cancel(L, s, idx, p->done, src + 1);
    } else {
        push_children(L, src);
        lua_pushvalue(L, idx);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
    lua_settop(L, src - 1);
}

/* Pushes a new ctx of the given kind under the parent at pidx (0: none, for the root). */
static conc_ctx_t *new_ctx(lua_State *L, conc_sched_t *s, int pidx, int kind)
{
    conc_ctx_t *x = (conc_ctx_t *)conc_compat_newud(L, sizeof *x, NUV);
    conc_ctx_t *p = pidx ? (conc_ctx_t *)lua_touserdata(L, pidx) : NULL;
    int idx = lua_gettop(L);
    memset(x, 0, sizeof *x);
    x->tag = CONC_TAG(CONC_UP_CTX_MT);
    x->id = ++s->next_obj_id;
    x->kind = (unsigned char)kind;
    x->deadline = p != NULL && kind != CTX_DETACHED ? p->deadline : HUGE_VAL;
    x->tnode.index = CONC_HEAP_NONE;
    x->tnode.kind = CONC_HEAP_CTX;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_CTX_MT));
    lua_setmetatable(L, idx);
    if (p != NULL) {
        lua_pushvalue(L, pidx);
        conc_compat_setuv(L, idx, UV_PARENT);
    }
    if (kind == CTX_CANCEL) {
        x->src = x;
        link_child(L, s, idx, pidx);
    } else if (kind == CTX_VALUE) {
        x->src = push_source(L, pidx);
        conc_compat_setuv(L, idx, UV_SRC);
    }
    return x;
}

/* The cancel function of a ctx (upvalue CANCEL_NUP): cancel([cause]). */
static int l_cancel(lua_State *L)
{
    conc_check_nargs(L, "cancel", 1, 0);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(CANCEL_NUP));
    cancel(L, conc_sched_get(L), 2, CANCELED, 1);
    return 0;
}

/* Returns ctx (at idx) and its cancel function. */
static int push_cancel(lua_State *L, int idx)
{
    int i;
    lua_pushvalue(L, idx);
    for (i = 1; i < CANCEL_NUP; i++)
        lua_pushvalue(L, lua_upvalueindex(i));
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, l_cancel, CANCEL_NUP);
    return 2;
}

/***
 * The root context: never done, no deadline, no values.
 * @treturn Context the root ctx
 * @function background
 */
static int l_background(lua_State *L)
{
    conc_check_nargs(L, "background", 0, 0);
    push_background(L, conc_sched_get(L));
    return 1;
}

/***
 * A child of `parent` that ends when `cancel` is called or when `parent` ends.
 * `cancel([cause])` can be called any number of times: the first call decides; its cause
 * (default: `conc.errors.canceled`) becomes `ctx:cause()`.
 * @tparam Context parent the parent
 * @treturn Context the child
 * @treturn function cancel
 * @function with_cancel
 */
static int l_with_cancel(lua_State *L)
{
    conc_check_nargs(L, "with_cancel", 1, 0);
    checkctx(L, 1, "with_cancel", 1);
    new_ctx(L, conc_sched_get(L), 1, CTX_CANCEL);
    return push_cancel(L, lua_gettop(L));
}

/* with_deadline(parent, t [, cause]): the deadline is the earlier of the parent's and t. */
static int with_deadline(lua_State *L, const char *fname, double t)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *p = (conc_ctx_t *)lua_touserdata(L, 1), *x;
    int idx;
    lua_settop(L, 3);
    x = new_ctx(L, s, 1, CTX_CANCEL);
    idx = lua_gettop(L);
    if (x->done || p->deadline <= t) /* the parent's deadline comes first: it cancels us */
        return push_cancel(L, idx);
    x->deadline = t;
    lua_pushvalue(L, 3);
    conc_compat_setuv(L, idx, UV_CAUSE); /* the cause given for the deadline, until done */
    if (t <= conc_sched_now(s)) {
        cancel(L, s, idx, DEADLINE_EXCEEDED, 3);
        return push_cancel(L, idx);
    }
    if (conc_heap_reserve(&s->timers, s->timers.len + 1) != 0)
        return conc_error(L, "%s: out of memory", fname);
    conc_sched_track(L, x, idx);
    x->tnode.deadline = t;
    conc_heap_push(&s->timers, &x->tnode);
    return push_cancel(L, idx);
}

/***
 * A child of `parent` that also ends at time `t` (a `conc.now()` reading), with
 * `conc.errors.deadline_exceeded`. Its deadline is the earlier of the parent's and `t`;
 * a `t` already past gives a ctx that is done at once.
 * @tparam Context parent the parent
 * @number t the deadline
 * @param[opt] cause what `ctx:cause()` returns when the deadline passes (not when `cancel`
 * is called)
 * @treturn Context the child
 * @treturn function cancel, as with `conc.with_cancel`
 * @function with_deadline
 */
static int l_with_deadline(lua_State *L)
{
    conc_check_nargs(L, "with_deadline", 3, 0);
    checkctx(L, 1, "with_deadline", 1);
    return with_deadline(L, "with_deadline", conc_checkduration(L, 2, "with_deadline", 2));
}

/* A timeout of 0 gives a ctx that is done on creation (X11); a negative one is a mistake
 * (a computed time gone wrong) and raises: a caller who means "already late" passes 0 or
 * uses with_deadline. */
/***
 * A child of `parent` that also ends `d` seconds from now, as `conc.with_deadline` with
 * `conc.now() + d`. A timeout of 0 gives a ctx that is done at once; a negative one
 * raises.
 * @tparam Context parent the parent
 * @number d the timeout in seconds, >= 0
 * @param[opt] cause as for `conc.with_deadline`
 * @treturn Context the child
 * @treturn function cancel, as with `conc.with_cancel`
 * @function with_timeout
 */
static int l_with_timeout(lua_State *L)
{
    double d;
    conc_check_nargs(L, "with_timeout", 3, 0);
    checkctx(L, 1, "with_timeout", 1);
    d = conc_checkduration(L, 2, "with_timeout", 2);
    if (d < 0)
        return conc_error(L, "with_timeout: bad argument #2 (timeout must not be negative, got %s)", lua_tostring(L, 2));
    return with_deadline(L, "with_timeout", conc_sched_now(conc_sched_get(L)) + d);
}

/***
 * A child of `parent` that carries *value* under *key*: `ctx:value(key)` finds it, in
 * this ctx and its descendants. It ends when `parent` ends.
 * @tparam Context parent the parent
 * @param key the key (not nil, not NaN), compared with rawequal
 * @param value the value
 * @treturn Context the child
 * @function with_value
 */
static int l_with_value(lua_State *L)
{
    conc_check_nargs(L, "with_value", 3, 0);
    checkctx(L, 1, "with_value", 1);
    if (lua_isnoneornil(L, 2))
        return conc_error(L, "with_value: bad argument #2 (key must not be nil)");
    if (lua_type(L, 2) == LUA_TNUMBER && lua_tonumber(L, 2) != lua_tonumber(L, 2))
        return conc_error(L, "with_value: bad argument #2 (key must not be NaN: it could never be found)");
    lua_settop(L, 3);
    new_ctx(L, conc_sched_get(L), 1, CTX_VALUE);
    lua_pushvalue(L, 2);
    conc_compat_setuv(L, 4, UV_KEY);
    lua_pushvalue(L, 3);
    conc_compat_setuv(L, 4, UV_VALUE);
    return 1;
}

/***
 * A child of `parent` that keeps its values but is never done and has no deadline.
 * @tparam Context parent the parent
 * @treturn Context the child
 * @function without_cancel
 */
static int l_without_cancel(lua_State *L)
{
    conc_check_nargs(L, "without_cancel", 1, 0);
    checkctx(L, 1, "without_cancel", 1);
    new_ctx(L, conc_sched_get(L), 1, CTX_DETACHED);
    return 1;
}

/* The stop function of after_func: upvalue 1 the source (nil: never done), 2 the entry's
 * key in the source's CHILDREN, nil once stop has been called. */
static int l_stop(lua_State *L)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, lua_upvalueindex(1));
    conc_check_nargs(L, "stop", 0, 0);
    if (lua_isnil(L, lua_upvalueindex(2))) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (x != NULL && !x->done) {
        conc_compat_getuv(L, lua_upvalueindex(1), UV_CHILDREN);
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_replace(L, lua_upvalueindex(2));
    lua_pushboolean(L, x == NULL || !x->done); /* done: fn was started (X23) */
    return 1;
}

/* after_func(ctx, fn): runs fn in its own task once ctx is done (X22-X24). */
/***
 * Runs `fn()` in a task of its own once `ctx` is done (soon, if it already is). Each call
 * registers anew.
 * @tparam Context ctx the ctx to watch
 * @tparam function fn the function
 * @treturn function `stop()`: true if it prevented the call; false once `fn` was started,
 * and on every later call. It does not wait for `fn`.
 * @function after_func
 */
static int l_after_func(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *src;
    conc_check_nargs(L, "after_func", 2, 0);
    checkctx(L, 1, "after_func", 1);
    if (lua_type(L, 2) != LUA_TFUNCTION)
        return conc_argerror(L, "after_func", 2, 2, "function");
    lua_settop(L, 2);
    src = push_source(L, 1); /* 3 */
    if (src != NULL && src->done) {
        conc_task_spawn(L, s, 2, 1);
        lua_pop(L, 1);
        lua_pushnil(L); /* no key: stop() returns false */
    } else {
        lua_newtable(L); /* a key of its own: registrations are independent (X24) */
        if (src != NULL) {
            push_children(L, 3);
            lua_pushvalue(L, 4);
            lua_pushvalue(L, 2);
            lua_rawset(L, -3);
            lua_pop(L, 1);
        }
    }
    lua_pushcclosure(L, l_stop, 2);
    return 1;
}

/* The scheduler's timer heap says x's deadline has come. */
void conc_ctx_fire(conc_sched_t *s, lua_State *L, conc_ctx_t *x)
{
    int top = lua_gettop(L);
    if (conc_sched_find(L, x)) { /* else: being collected */
        conc_compat_getuv(L, top + 1, UV_CAUSE);
        cancel(L, s, top + 1, DEADLINE_EXCEEDED, top + 2);
    }
    lua_settop(L, top);
}

/* Pushes onto the woken task t what its blocking call returns because the ctx at slot
 * ctxslot of its stack ended: recv (nil, false, err); an iterator nothing (the loop ends);
 * every other call (nil, err). Returns the count. */
int conc_ctx_push_failure(lua_State *L, conc_task_t *t, int ctxslot)
{
    lua_State *co = t->co;
    lua_checkstack(co, 4);
    if (t->reason == CONC_WAIT_RECV && t->waiters[0].caseno == CONC_ITER_CASE)
        return 0;
    lua_pushnil(co);
    if (t->reason == CONC_WAIT_RECV)
        lua_pushboolean(co, 0);
    push_err(L, ((conc_ctx_t *)lua_touserdata(co, ctxslot))->src->done);
    lua_xmove(L, co, 1);
    return t->reason == CONC_WAIT_RECV ? 3 : 2;
}

/* D1: when the ctx at idx is done on entry, pushes what the call returns then, (nil, err),
 * or (nil, false, err) for a receive, and returns the count; else returns 0. */
int conc_ctx_failed(lua_State *L, conc_ctx_t *x, int is_recv)
{
    if (x == NULL || !conc_ctx_is_done(x))
        return 0;
    lua_pushnil(L);
    if (is_recv)
        lua_pushboolean(L, 0);
    push_err(L, x->src->done);
    return is_recv ? 3 : 2;
}

void conc_task_wait_ctx(lua_State *L, conc_task_t *t, conc_ctx_t *x, int ctxslot)
{
    conc_waiter_t *w;
    if (x == NULL || x->src == NULL)
        return; /* never done: nothing to wait for */
    if (x->src->donech == NULL) {
        push_source(L, ctxslot);
        source_done(L, conc_sched_get(L), -1);
        lua_pop(L, 1);
    }
    w = conc_task_waiters(L, t, t->nwait + 1) + t->nwait;
    w->home = &x->src->donech->recvq;
    w->owner = t;
    w->objslot = ctxslot;
    w->valslot = 0;
    w->caseno = CONC_CTX_CASE;
    t->nwait++;
}

/***
 * A context, made by `conc.background`, `conc.with_cancel`, `conc.with_deadline`,
 * `conc.with_timeout`, `conc.with_value` or `conc.without_cancel`.
 * @type Context
 */

/***
 * A channel that is closed when the ctx is cancelled or its deadline passes (never for
 * a ctx that cannot end). Receive from it, or use it as a `conc.select` case; it cannot
 * be sent on or closed.
 * @treturn Channel the same channel at every call
 * @function done
 */
static int x_done(lua_State *L)
{
    conc_sched_t *s;
    conc_ctx_t *x = checkctx(L, 1, "ctx:done", 0);
    if (x->src == x && x->donech != NULL && lua_gettop(L) == 1) { /* the common case, fast */
        conc_compat_getuv(L, 1, UV_DONE);
        return 1;
    }
    conc_check_nargs(L, "ctx:done", 0, 1);
    s = conc_sched_get(L);
    if (x->src == NULL)
        push_background(L, s);
    else
        push_source(L, 1);
    source_done(L, s, -1);
    conc_compat_getuv(L, -1, UV_DONE);
    return 1;
}

/* err() and cause(): from the source once it is done, else nothing. */
/***
 * Why the ctx ended; stable once set.
 * @return nil while it has not ended, then `conc.errors.canceled` or
 * `conc.errors.deadline_exceeded`
 * @function err
 */
static int x_err(lua_State *L)
{
    conc_ctx_t *x = checkctx(L, 1, "ctx:err", 0);
    conc_check_nargs(L, "ctx:err", 0, 1);
    if (!conc_ctx_is_done(x))
        return 0;
    push_err(L, x->src->done);
    return 1;
}

/***
 * The cause given to `cancel` (or to `with_deadline` for its deadline) once the ctx has
 * ended, else `ctx:err()`.
 * @return nil while it has not ended, then the cause
 * @function cause
 */
static int x_cause(lua_State *L)
{
    conc_ctx_t *x = checkctx(L, 1, "ctx:cause", 0);
    conc_check_nargs(L, "ctx:cause", 0, 1);
    if (!conc_ctx_is_done(x))
        return 0;
    push_cause(L, 1);
    return 1;
}

/***
 * When the ctx will end by itself.
 * @treturn ?number the deadline (a `conc.now()` time), or nil when it has none
 * @function deadline
 */
static int x_deadline(lua_State *L)
{
    conc_ctx_t *x = checkctx(L, 1, "ctx:deadline", 0);
    conc_check_nargs(L, "ctx:deadline", 0, 1);
    if (x->deadline == HUGE_VAL)
        return 0;
    lua_pushnumber(L, x->deadline);
    return 1;
}

/* value(key): the value of the nearest with_value ancestor (or self) with that key. */
/***
 * The value of the nearest ctx, this one or an ancestor, made by `conc.with_value` with
 * this key. Values never flow up to a parent.
 * @param key the key
 * @return the value, or nil when no ctx in the chain has the key
 * @function value
 */
static int x_value(lua_State *L)
{
    checkctx(L, 1, "ctx:value", 0);
    conc_check_nargs(L, "ctx:value", 1, 1);
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    while (!lua_isnil(L, 3)) {
        if (((conc_ctx_t *)lua_touserdata(L, 3))->kind == CTX_VALUE) {
            conc_compat_getuv(L, 3, UV_KEY);
            if (lua_rawequal(L, -1, 2)) {
                conc_compat_getuv(L, 3, UV_VALUE);
                return 1;
            }
            lua_pop(L, 1);
        }
        conc_compat_getuv(L, 3, UV_PARENT);
        lua_replace(L, 3);
    }
    return 1;
}

static int x_tostring(lua_State *L)
{
    static const char *const kinds[] = {"background", "cancel", "value", "without_cancel"};
    conc_ctx_t *x = checkctx(L, 1, "ctx:__tostring", 0);
    lua_pushfstring(L, "ctx#%d (%s%s)", (int)x->id, kinds[x->kind], conc_ctx_is_done(x) ? ", done" : "");
    return 1;
}

static int x_gc(lua_State *L)
{
    conc_ctx_t *x = (conc_ctx_t *)lua_touserdata(L, 1);
    conc_heap_remove(&conc_sched_get(L)->timers, &x->tnode);
    return 0;
}

/* core.ctx_children(ctx): how many children and after_func entries its source holds (for
 * the specs of X9 and X24). */
static int l_ctx_children(lua_State *L)
{
    lua_Integer n = 0;
    checkctx(L, 1, "ctx_children", 1);
    if (push_source(L, 1) != NULL) {
        conc_compat_getuv(L, -1, UV_CHILDREN);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            while (lua_next(L, -2) != 0) {
                lua_pop(L, 1);
                n++;
            }
        }
    }
    lua_pushinteger(L, n);
    return 1;
}

const luaL_Reg conc_ctx_funcs[] = {
    {"background", l_background},
    {"with_cancel", l_with_cancel},
    {"with_deadline", l_with_deadline},
    {"with_timeout", l_with_timeout},
    {"with_value", l_with_value},
    {"without_cancel", l_without_cancel},
    {"after_func", l_after_func},
    {"ctx_children", l_ctx_children},
    {NULL, NULL}
};

const luaL_Reg conc_ctx_methods[] = {
    {"done", x_done},
    {"err", x_err},
    {"cause", x_cause},
    {"deadline", x_deadline},
    {"value", x_value},
    {NULL, NULL}
};

const luaL_Reg conc_ctx_metamethods[] = {
    {"__tostring", x_tostring},
    {"__gc", x_gc},
    {NULL, NULL}
};
