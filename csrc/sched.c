/*
 * sched.c: the scheduler of one Lua state: run queue, parking and waking, timers, the
 * libuv loop, the top level as a pseudo-task, deadlock detection, run/step/stats.
 *
 * Ownership and invariants:
 * - A task is live from conc.go until it returns, fails or is abandoned. While live it is
 *   on s->live and holds a registry ref to its userdata (released at that end), so a parked
 *   task is never collected.
 * - A task is in the run queue exactly while its status is ready. Only live tasks are
 *   queued; the top level never is: drive returns as soon as it is woken.
 * - A parked task's stack holds, at indices 1..n, the arguments of the call that parked it
 *   (a task yields its whole frame; the top level copies its frame to a holder thread).
 *   Waiters name the slots of the object and of a sender's value, so values in flight
 *   stay referenced by the parked task and nothing is copied into tables.
 * - Waiters are linked only after the yield succeeded (commit_park), and a park is known
 *   by the mark its yield carries on top, never by a flag set before the yield: on PUC 5.1
 *   lua_yield can still raise (inside pcall), and then nothing was linked, no state
 *   changed, and nothing stale is committed later.
 * - A waker pushes the results onto the parked task's stack, then calls conc_sched_wake,
 *   which unlinks every other waiter of that task at once (select's pass 3) and removes
 *   its timer, so no queue ever holds a stale waiter.
 * - uv_run is entered only by drive and step, at the top level, never re-entered
 *   (s->driving).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "conc.h"

/*** @module conc */

/*** Tasks and the runtime.
 * @section runtime
 */

const char *const conc_reason_names[] = {"none", "yield", "recv", "send", "select", "sleep", "task",
                                         "waitgroup", "acquire", "lock", "accept", "connect", "read", "write"};
const char *const conc_status_names[] = {"ready", "running", "blocked", "done", "failed"};

/* Their addresses mark results that must raise in the woken task (conc_sched_push_raise),
 * and the yield of a park (conc_sched_park). */
static const char raise_mark = 0, park_mark = 0;
#define RAISE_MARK ((void *)(uintptr_t)&raise_mark)
#define PARK_MARK ((void *)(uintptr_t)&park_mark)

/* The loop and the wake-up timer live in one malloc'ed block: libuv may hold them until
 * the close callbacks ran, which the Lua GC knows nothing about. */
typedef struct loop_block {
    uv_loop_t loop;
    uv_timer_t wake;
} loop_block_t;

static void wake_cb(uv_timer_t *h)
{
    (void)h; /* it only ends uv_run(UV_RUN_ONCE); drive fires the due timers */
}

void conc_sched_init(conc_sched_t *s, lua_State *L)
{
    loop_block_t *b;
    memset(s, 0, sizeof *s);
    b = malloc(sizeof *b);
    if (b == NULL || uv_loop_init(&b->loop) != 0) {
        free(b);
        conc_error(L, "cannot start the libuv loop");
    }
    uv_timer_init(&b->loop, &b->wake);
    s->loop = &b->loop;
    s->wake = &b->wake;
    conc_runq_init(&s->runq);
    conc_heap_init(&s->timers);
    s->main.ref = LUA_NOREF;
    s->main.status = CONC_TASK_RUNNING;
    s->main.waiters = &s->main.w1;
    s->main.wcap = 1;
    s->main.timer.index = CONC_HEAP_NONE;
    s->main.timer.kind = CONC_HEAP_SLEEP;
    conc_waitq_init(&s->main.joiners);
    s->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32) ^ (uint64_t)(uintptr_t)s;
    if (s->rng == 0)
        s->rng = 1;
    if (conc_runq_reserve(&s->runq, 256) != 0)
        conc_error(L, "out of memory");
}

double conc_sched_now(conc_sched_t *s)
{
    return s->virtual_time ? s->vnow : (double)uv_hrtime() / 1e9;
}

uint64_t conc_rand(conc_sched_t *s)
{
    uint64_t x = s->rng; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 2685821657736338717ULL;
}

void conc_push_task(lua_State *L, conc_task_t *t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
}

/* Pushes hooks[name] (set by init.lua). Only from a conc.core function (its upvalues). */
void conc_push_hook(lua_State *L, const char *name)
{
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_HOOKS);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* The owner of a heap node (a timer channel, a ctx) is found from the node through a
 * weak table: a pending deadline must not keep its object alive. */
void conc_sched_track(lua_State *L, const void *owner, int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_TIMERS);
    lua_pushlightuserdata(L, (void *)(uintptr_t)owner);
    lua_pushvalue(L, idx);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Pushes the object tracked for owner; returns 0 (and pushes nothing) when it is gone or
 * being collected. */
int conc_sched_find(lua_State *L, const void *owner)
{
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_TIMERS);
    lua_pushlightuserdata(L, (void *)(uintptr_t)owner);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

/* --- parking and waking ------------------------------------------------------------ */

conc_task_t *conc_sched_parker(lua_State *L, conc_sched_t *s, const char *fname)
{
    conc_task_t *t = s->current;
    if (t != NULL) {
        if (L != t->exec)
            conc_error(L, "%s: blocking call from a nested coroutine (only a task's own coroutine can block)", fname);
        if (!conc_compat_isyieldable(L))
            conc_error(L, "%s: cannot block here (inside a metamethod, an iterator or a C call that cannot yield)", fname);
    } else {
        int is_main = lua_pushthread(L);
        lua_pop(L, 1);
        if (!is_main)
            conc_error(L, "%s: blocking call from a nested coroutine (only a task's own coroutine can block)", fname);
        if (s->driving)
            conc_error(L, "%s: blocking call from inside the scheduler (a __gc metamethod or a hook)", fname);
        t = &s->main;
    }
    t->nwait = 0;
    t->timed = 0;
    return t;
}

conc_waiter_t *conc_task_waiters(lua_State *L, conc_task_t *t, int n)
{
    int i;
    if (n > t->wcap) { /* none is linked yet: the ones described so far are copied */
        int cap = n < 4 ? 4 : n;
        conc_waiter_t *w = malloc((size_t)cap * sizeof *w);
        if (w == NULL)
            conc_error(L, "out of memory");
        memcpy(w, t->waiters, (size_t)t->nwait * sizeof *w);
        if (t->waiters != &t->w1)
            free(t->waiters);
        t->waiters = w;
        t->wcap = cap;
    }
    for (i = t->nwait; i < n; i++)
        t->waiters[i].q = NULL;
    return t->waiters;
}

void conc_task_wait_on(lua_State *L, conc_task_t *t, conc_waitq_t *q, int valslot, int caseno)
{
    conc_waiter_t *w = conc_task_waiters(L, t, 1);
    w->home = q;
    w->owner = t;
    w->objslot = 1;
    w->valslot = valslot;
    w->caseno = caseno;
    t->nwait = 1;
}

/* Called once the task's yield succeeded (or, for the top level, before it drives). */
static void commit_park(conc_sched_t *s, conc_task_t *t)
{
    int i;
    t->nargs = 0;
    if (t->reason == CONC_WAIT_YIELD) { /* only tasks: the top level yields by stepping */
        t->status = CONC_TASK_READY;
        conc_runq_push(&s->runq, t);
        return;
    }
    for (i = 0; i < t->nwait; i++)
        conc_waitq_push(t->waiters[i].home, &t->waiters[i]);
    if (t->timed) {
        t->timed = 0;
        conc_heap_push(&s->timers, &t->timer);
    }
    t->status = CONC_TASK_BLOCKED;
}

static void unpark(conc_sched_t *s, conc_task_t *t)
{
    conc_waitq_t *left = NULL; /* a queue that wants to know (one park waits on one such) */
    int i;
    for (i = 0; i < t->nwait; i++) {
        conc_waitq_t *q = t->waiters[i].q;
        if (q != NULL && q->on_leave != NULL)
            left = q;
        conc_waitq_remove(&t->waiters[i]);
    }
    t->nwait = 0;
    conc_heap_remove(&s->timers, &t->timer);
    t->reason = CONC_WAIT_NONE;
    if (left != NULL)
        left->on_leave(left, s);
}

void conc_sched_wake(conc_sched_t *s, conc_task_t *t, int nres)
{
    CONC_ASSERT(t->status == CONC_TASK_BLOCKED);
    unpark(s, t);
    t->nargs = nres;
    t->status = CONC_TASK_READY;
    if (t != &s->main) /* the top level is not queued: drive returns as soon as it is woken */
        conc_runq_push(&s->runq, t); /* room was reserved when the task started */
}

void conc_sched_push_raise(lua_State *co, const char *msg)
{
    lua_checkstack(co, 2);
    lua_pushlightuserdata(co, RAISE_MARK);
    lua_pushstring(co, msg);
}

/* The results a woken call returns: the values above stack index `base`, unless they carry
 * the raise mark, in which case the message is raised in the woken task. On 5.2+ this is
 * the continuation of every park (the parked frame is still below the results there); on
 * 5.1 and LuaJIT, where only the results come back, init.lua calls it (core.finish)
 * around the calls that can be woken to raise. */
int conc_sched_finish_raise(lua_State *L, int base)
{
    int n = lua_gettop(L) - base;
    if (n == 2 && lua_touserdata(L, base + 1) == RAISE_MARK)
        return lua_error(L);
    return n;
}

#if CONC_HAVE_YIELDK
static int park_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    return conc_sched_finish_raise(L, (int)ctx);
}
#endif

static int drive(lua_State *L, conc_sched_t *s);

/* The top level parks: its frame is copied to the holder thread so that wakers find the
 * values at the same slots as in a task, then the scheduler runs until the top level is
 * woken. Returns 0 with the results moved onto L, or -1 with the deadlock message on L. */
static int park_main(lua_State *L, conc_sched_t *s, int *nres)
{
    conc_task_t *m = &s->main;
    lua_State *h = m->co;
    int n = lua_gettop(L), i;
    lua_settop(h, 0);
    if (!lua_checkstack(h, n + 8) || !lua_checkstack(L, n + 8))
        conc_error(L, "stack overflow");
    for (i = 1; i <= n; i++)
        lua_pushvalue(L, i);
    lua_xmove(L, h, n);
    commit_park(s, m);
    if (drive(L, s) != 0) {
        unpark(s, m);
        m->status = CONC_TASK_RUNNING;
        lua_settop(h, 0);
        return -1;
    }
    *nres = m->nargs;
    lua_xmove(h, L, m->nargs);
    lua_settop(h, 0);
    return 0;
}

int conc_sched_park(lua_State *L, conc_sched_t *s, conc_task_t *t, conc_reason_t reason)
{
    int nres;
    t->reason = reason;
    if (t != &s->main) {
        /* the frame stays on the task's stack, the mark on top of it */
        luaL_checkstack(L, 1, NULL);
        lua_pushlightuserdata(L, PARK_MARK);
#if CONC_HAVE_YIELDK
        return lua_yieldk(L, lua_gettop(L), (lua_KContext)lua_gettop(L), park_k);
#else
        return lua_yield(L, lua_gettop(L));
#endif
    }
    if (park_main(L, s, &nres) != 0)
        return lua_error(L);
    if (nres == 2 && lua_touserdata(L, -2) == RAISE_MARK)
        return lua_error(L);
    return nres;
}

/* --- tasks: start, run, finish, abandon ----------------------------------------------- */

void conc_sched_reserve(lua_State *L, conc_sched_t *s)
{
    /* every live task and the top level may be queued at once */
    if (conc_runq_reserve(&s->runq, s->ntasks + 2) != 0)
        conc_error(L, "go: out of memory");
}

void conc_sched_spawned(conc_sched_t *s, conc_task_t *t)
{
    t->live_prev = NULL;
    t->live_next = s->live;
    if (s->live)
        s->live->live_prev = t;
    s->live = t;
    s->ntasks++;
    t->status = CONC_TASK_READY;
    conc_runq_push(&s->runq, t);
}

static void unlive(conc_sched_t *s, conc_task_t *t)
{
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else
        s->live = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    t->live_prev = t->live_next = NULL;
    s->ntasks--;
}

/* Pushes onto `to` what wait() returns for finished task t (its userdata at L's index
 * tidx): true and its results, or nil and its error. Returns the count. */
int conc_task_outcome(lua_State *L, conc_task_t *t, int tidx, lua_State *to)
{
    if (t->status == CONC_TASK_DONE) {
        lua_State *co = t->co; /* NULL once recycled, which happens only when nres == 0 */
        int base, i;
        if (!lua_checkstack(to, t->nres + 1))
            conc_error(L, "task:wait: too many results");
        lua_pushboolean(to, 1);
        if (t->nres == 0)
            return 1;
        if (!lua_checkstack(co, t->nres))
            conc_error(L, "task:wait: too many results");
        base = lua_gettop(co) - t->nres;
        for (i = 1; i <= t->nres; i++)
            lua_pushvalue(co, base + i);
        lua_xmove(co, to, t->nres);
        return t->nres + 1;
    }
    (void)tidx;
    lua_checkstack(to, 2);
    lua_checkstack(t->co, 1);
    lua_pushnil(to);
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, to, 1);
    return 2;
}

/* A coroutine whose function returned is back at its base and can run another function:
 * keep a few for the next tasks to start, so spawn-and-finish allocates no coroutine. */
#define POOL_MAX 64

static void recycle(lua_State *L, conc_sched_t *s, conc_task_t *t, int tidx)
{
    if (s->npool >= POOL_MAX || lua_gethook(t->co) != NULL)
        return;
    lua_settop(t->co, 0);
    conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_POOL);
    conc_compat_getuv(L, tidx, CONC_TASK_UV_CO);
    lua_rawseti(L, -2, ++s->npool);
    lua_pop(L, 1);
    lua_pushnil(L);
    conc_compat_setuv(L, tidx, CONC_TASK_UV_CO);
    t->co = t->exec = NULL;
}

/* Gives task t (just out of the run queue, never run) its coroutine, from the pool or
 * new, with its function and arguments on it. */
static void start(lua_State *L, conc_sched_t *s, conc_task_t *t)
{
    lua_State *co;
    int tidx, n = t->nargs, i;
    conc_push_task(L, t);
    tidx = lua_gettop(L);
    if (s->npool > 0) {
        conc_compat_getuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_POOL);
        lua_rawgeti(L, -1, s->npool);
        lua_pushnil(L);
        lua_rawseti(L, -3, s->npool--);
        lua_remove(L, -2);
        co = lua_tothread(L, -1);
    } else {
        co = lua_newthread(L);
    }
    conc_compat_getuv(L, tidx, CONC_TASK_UV_CO); /* the function, or {fn, args...} */
    lua_insert(L, -2);
    conc_compat_setuv(L, tidx, CONC_TASK_UV_CO);
    if (!lua_checkstack(co, n + LUA_MINSTACK) || !lua_checkstack(L, n))
        conc_error(L, "go: too many arguments");
    if (n == 1) {
        lua_xmove(L, co, 1);
    } else {
        for (i = 1; i <= n; i++)
            lua_rawgeti(L, tidx + 1, i);
        lua_xmove(L, co, n);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    t->co = t->exec = co;
    t->nargs = n - 1;
}

/* The task returned (failed == 0, nres results on its stack) or raised (failed == 1). */
static void finish(lua_State *L, conc_sched_t *s, conc_task_t *t, int nres, int failed)
{
    conc_waiter_t *w;
    int tidx;
    unlive(s, t);
    conc_push_task(L, t);
    tidx = lua_gettop(L);
    if (failed) {
        /* hooks.make_error(raw, task, co) builds the conc error; the raw value stays the
         * error if the hook is missing or fails */
        conc_push_hook(L, "make_error");
        lua_checkstack(t->co, 2);
        lua_pushvalue(t->co, -1);
        lua_xmove(t->co, L, 1);
        if (lua_isfunction(L, -2)) {
            lua_pushvalue(L, tidx);
            lua_pushthread(t->co);
            lua_xmove(t->co, L, 1);
            if (lua_pcall(L, 3, 1, 0) != 0) {
                lua_pop(L, 1);
                lua_checkstack(t->co, 2);
                lua_pushvalue(t->co, -1);
                lua_xmove(t->co, L, 1);
            }
        } else {
            lua_remove(L, -2);
        }
        lua_xmove(L, t->co, 1); /* the error stays on top of the dead coroutine */
        t->status = CONC_TASK_FAILED;
        t->nres = 0;
    } else {
        t->status = CONC_TASK_DONE;
        t->nres = nres;
    }
    if (failed && t->joiners.head == NULL) {
        conc_push_hook(L, "report");
        if (lua_isfunction(L, -1)) {
            lua_checkstack(t->co, 1);
            lua_pushvalue(t->co, -1);
            lua_xmove(t->co, L, 1);
            if (lua_pcall(L, 1, 0, 0) != 0)
                lua_pop(L, 1);
        } else {
            lua_pop(L, 1);
        }
    }
    while ((w = conc_waitq_pop(&t->joiners)) != NULL) {
        conc_task_t *j = (conc_task_t *)w->owner;
        conc_sched_wake(s, j, conc_task_outcome(L, t, tidx, j->co));
    }
    if (!failed && nres == 0)
        recycle(L, s, t, tidx);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
}

static void run_task(lua_State *L, conc_sched_t *s, conc_task_t *t)
{
    int nres = 0, st;
    if (t->co == NULL)
        start(L, s, t);
    s->current = t;
    t->status = CONC_TASK_RUNNING;
    st = conc_compat_resume(t->co, L, t->nargs, &nres);
    s->current = NULL;
    s->switches++;
    if (st == LUA_YIELD) {
        if (nres > 0 && lua_touserdata(t->co, -1) == PARK_MARK) {
            commit_park(s, t);
        } else {
            /* a raw coroutine.yield in a task: its values are dropped, and the task just
             * gives the other tasks a turn, as conc.yield does */
            lua_pop(t->co, nres);
            t->nargs = 0;
            t->status = CONC_TASK_READY;
            conc_runq_push(&s->runq, t);
        }
    } else {
        finish(L, s, t, nres, st != LUA_OK);
    }
}

void conc_sched_abandon_all(conc_sched_t *s, lua_State *L)
{
    while (s->live != NULL) {
        conc_task_t *t = s->live;
        unpark(s, t);
        while (conc_waitq_pop(&t->joiners) != NULL)
            ;
        unlive(s, t);
        luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
        t->ref = LUA_NOREF;
    }
    conc_runq_clear(&s->runq);
}

/* --- timers and the loop ---------------------------------------------------------------- */

static void fire_timers(lua_State *L, conc_sched_t *s)
{
    conc_heap_node_t *n = conc_heap_min(&s->timers);
    double now;
    if (n == NULL)
        return;
    now = conc_sched_now(s);
    while ((n = conc_heap_min(&s->timers)) != NULL && n->deadline <= now) {
        conc_heap_remove(&s->timers, n);
        if (n->kind == CONC_HEAP_SLEEP) {
            conc_task_t *t = conc_container_of(n, conc_task_t, timer);
            lua_checkstack(t->co, 1);
            lua_pushboolean(t->co, 1);
            conc_sched_wake(s, t, 1);
        } else if (n->kind == CONC_HEAP_TIMER) {
            conc_timer_fire(s, L, conc_container_of(n, conc_chan_t, tnode), now);
        } else {
            conc_ctx_fire(s, L, conc_container_of(n, conc_ctx_t, tnode));
        }
    }
}

/* Arms the wake-up timer for `limit` seconds from now at the most, or for the earliest
 * deadline if that comes first (limit < 0: no limit). libuv counts whole milliseconds from a
 * cached time, so the timeout is rounded up and a wake-up that comes early is simply armed
 * again: a sleep never ends before its duration. */
static void arm_wake(conc_sched_t *s, double limit)
{
    conc_heap_node_t *n = conc_heap_min(&s->timers);
    double d = limit;
    if (n != NULL) {
        double until = n->deadline - conc_sched_now(s);
        if (d < 0 || until < d)
            d = until;
    }
    if (d < 0)
        return;
    d = ceil(d * 1000.0);
    if (d > 86400000.0)
        d = 86400000.0;
    uv_update_time(s->loop);
    uv_timer_start(s->wake, wake_cb, (uint64_t)d, 0);
}

/* Waits for I/O or the next timer (at most `limit` s; < 0: no limit), then fires due
 * timers. Under virtual time, the clock jumps to the next deadline instead of waiting. */
static void wait_events(lua_State *L, conc_sched_t *s, double limit)
{
    conc_heap_node_t *n = conc_heap_min(&s->timers);
    if (s->virtual_time && (n != NULL || limit >= 0)) {
        uv_run(s->loop, UV_RUN_NOWAIT);
        if (s->runq.len == 0) {
            double to = s->vnow + limit;
            if (n != NULL && (limit < 0 || n->deadline < to))
                to = n->deadline;
            if (to > s->vnow)
                s->vnow = to;
        }
    } else {
        arm_wake(s, limit);
        uv_run(s->loop, UV_RUN_ONCE);
        uv_timer_stop(s->wake);
    }
    fire_timers(L, s);
}

/* Nothing is ready, no timer is pending and libuv has no live handle or request. */
static int asleep(conc_sched_t *s)
{
    return s->runq.len == 0 && conc_heap_min(&s->timers) == NULL && !uv_loop_alive(s->loop);
}

static void push_deadlock(lua_State *L)
{
    lua_pushliteral(L, "conc: all tasks are asleep - deadlock!");
    conc_push_hook(L, "dump");
    if (lua_isfunction(L, -1) && lua_pcall(L, 0, 1, 0) == 0 && lua_isstring(L, -1)) {
        lua_pushliteral(L, "\n\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    } else {
        lua_pop(L, 1);
    }
}

static conc_task_t *next_ready(conc_sched_t *s)
{
#ifdef CONC_DEBUG
    /* debug builds run ready tasks in a random order, so specs cannot rely on one */
    if (s->runq.len > 1)
        conc_runq_swap_head(&s->runq, (size_t)(conc_rand(s) % s->runq.len));
#endif
    return (conc_task_t *)conc_runq_pop(&s->runq);
}

/* Runs tasks, timers and I/O until the top level's pseudo-task is woken, and returns at
 * once then: when conc.run's main task returns, no other task runs again. Returns 0, or -1
 * with the deadlock message on L. Called only from the top level. */
static int drive(lua_State *L, conc_sched_t *s)
{
    conc_task_t *m = &s->main;
    unsigned tick = 0;
    int rc = 0;
    s->driving = 1;
    s->L = L;
    while (m->status != CONC_TASK_READY) {
        if (s->runq.len > 0) {
            run_task(L, s, next_ready(s));
            if ((++tick & 63) == 0) {
                /* let timers and I/O in even while tasks keep each other busy */
                fire_timers(L, s);
                uv_run(s->loop, UV_RUN_NOWAIT);
            }
        } else if (asleep(s)) {
            push_deadlock(L);
            rc = -1;
            break;
        } else {
            wait_events(L, s, -1);
        }
    }
    if (rc == 0)
        m->status = CONC_TASK_RUNNING;
    s->driving = 0;
    s->L = NULL;
    return rc;
}

int conc_sched_step(lua_State *L, conc_sched_t *s, double timeout)
{
    size_t batch;
    s->driving = 1;
    s->L = L;
    fire_timers(L, s);
    uv_run(s->loop, UV_RUN_NOWAIT);
    for (batch = s->runq.len; batch > 0 && s->runq.len > 0; batch--)
        run_task(L, s, next_ready(s));
    if (s->runq.len == 0 && timeout > 0 && !asleep(s))
        wait_events(L, s, timeout);
    s->driving = 0;
    s->L = NULL;
    return (int)s->ntasks;
}

static void close_left(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h) && h->data != NULL)
        ((conc_closer_t *)h->data)->close((conc_closer_t *)h->data);
}

void conc_sched_close(conc_sched_t *s, lua_State *L)
{
    loop_block_t *b;
    if (s->loop == NULL)
        return;
    conc_sched_abandon_all(s, L);
    b = conc_container_of(s->loop, loop_block_t, loop);
    uv_close((uv_handle_t *)s->wake, NULL);
    uv_walk(s->loop, close_left, NULL); /* sockets and signal watches still open */
    uv_run(s->loop, UV_RUN_DEFAULT);
    uv_loop_close(s->loop);
    free(b);
    s->loop = NULL;
    conc_runq_free(&s->runq);
    conc_heap_free(&s->timers);
    free(s->cases);
    s->cases = NULL;
    if (s->main.waiters != &s->main.w1)
        free(s->main.waiters);
    s->main.waiters = &s->main.w1;
}

/* --- Lua functions ----------------------------------------------------------------------- */

/***
 * Runs `fn(...)` as the main task and drives the scheduler until it returns. Call it from
 * the top level only (not from a task, nor from a coroutine of your own). Tasks still
 * alive when it returns are abandoned, as in Go. In a script it is optional: a blocking
 * call at the top level drives the scheduler until that call completes.
 * @tparam function fn the main task's body
 * @param ... the arguments of `fn`
 * @return ... `fn`'s results
 * @raise `fn`'s error (a conc error with its traceback) when it failed;
 * `conc: all tasks are asleep - deadlock!` and a dump of every task when nothing can
 * ever run again
 * @function run
 */
static int l_run(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t, *m = &s->main;
    int nres, tidx, is_main;
    if (s->current != NULL || s->driving)
        return conc_error(L, "run: called from inside a task (only the top level can run the scheduler)");
    is_main = lua_pushthread(L);
    lua_pop(L, 1);
    if (!is_main)
        return conc_error(L, "run: called from a nested coroutine (call it from the main thread)");
    if (lua_type(L, 1) != LUA_TFUNCTION)
        return conc_argerror(L, "run", 1, 1, "function");
    /* start fn(...) as a task, then park the top level in wait() on it */
    t = conc_task_spawn(L, s, 1, lua_gettop(L));
    tidx = lua_gettop(L);
    m->timed = 0;
    conc_task_wait_on(L, m, &t->joiners, 0, 0);
    m->waiters[0].objslot = tidx;
    m->reason = CONC_WAIT_TASK;
    if (park_main(L, s, &nres) != 0) {
        conc_sched_abandon_all(s, L);
        return lua_error(L);
    }
    /* When the main task returns, the tasks still alive are abandoned, as in Go. */
    conc_sched_abandon_all(s, L);
    if (!lua_toboolean(L, -nres))
        return lua_error(L);
    return nres - 1;
}

/***
 * One turn of the scheduler, for a host with a loop of its own: runs the tasks that are
 * ready once and the timers that are due, then waits for I/O or a timer at most `timeout`
 * seconds. Top level only.
 * @number[opt=0] timeout the longest wait in seconds (0: do not wait)
 * @treturn integer the number of live tasks
 * @function step
 */
static int l_step(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    double timeout = 0;
    conc_check_nargs(L, "step", 1, 0);
    if (!lua_isnoneornil(L, 1))
        timeout = conc_checkduration(L, 1, "step", 1);
    if (s->current != NULL || s->driving)
        return conc_error(L, "step: called from inside a task (only the top level can run the scheduler)");
    lua_pushinteger(L, conc_sched_step(L, s, timeout));
    return 1;
}

/***
 * Counters of the scheduler.
 * @treturn table the counters: `tasks` (live tasks), `ready` and `blocked` (among them),
 * `switches` (task switches so far), `chan_ops` (channel operations so far), `timers`
 * (pending timers)
 * @function stats
 */
static int l_stats(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t;
    lua_Integer ready = 0, blocked = 0;
    conc_check_nargs(L, "stats", 0, 0);
    for (t = s->live; t != NULL; t = t->live_next) {
        if (t->status == CONC_TASK_READY)
            ready++;
        else if (t->status == CONC_TASK_BLOCKED)
            blocked++;
    }
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)s->ntasks);
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, ready);
    lua_setfield(L, -2, "ready");
    lua_pushinteger(L, blocked);
    lua_setfield(L, -2, "blocked");
    lua_pushnumber(L, (lua_Number)s->switches);
    lua_setfield(L, -2, "switches");
    lua_pushnumber(L, (lua_Number)s->chan_ops);
    lua_setfield(L, -2, "chan_ops");
    lua_pushinteger(L, (lua_Integer)s->timers.len);
    lua_setfield(L, -2, "timers");
    return 1;
}

/***
 * Seeds the scheduler's random choices (which ready case a `select` takes; the order of
 * the run queue in the debug build), so that a run can be replayed.
 * @number n the seed
 * @function seed
 */
static int l_seed(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    uint64_t x;
    conc_check_nargs(L, "seed", 1, 0);
    if (lua_type(L, 1) != LUA_TNUMBER)
        return conc_argerror(L, "seed", 1, 1, "number");
    /* splitmix64 of the seed, so that small seeds give well-mixed states */
    x = (uint64_t)(int64_t)lua_tonumber(L, 1) + 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    s->rng = x ? x : 1;
    return 0;
}

/***
 * Switches the virtual clock on or off, for tests. While it is on, `conc.now()` moves only
 * when no task is ready, jumping to the next timer (like Go's `testing/synctest`), so code
 * with timers and deadlines runs exactly and at once.
 * @bool on true to use the virtual clock (it starts at the real time), false for the real
 * clock
 * @function virtual_time
 */
static int l_virtual_time(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_check_nargs(L, "virtual_time", 1, 0);
    if (lua_type(L, 1) != LUA_TBOOLEAN)
        return conc_argerror(L, "virtual_time", 1, 1, "boolean");
    if (lua_toboolean(L, 1) && !s->virtual_time)
        s->vnow = (double)uv_hrtime() / 1e9;
    s->virtual_time = lua_toboolean(L, 1);
    return 0;
}

static int l_set_hooks(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "canceled");
    conc_compat_setuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_CANCELED);
    lua_getfield(L, 1, "deadline_exceeded");
    conc_compat_setuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_DEADLINE);
    conc_compat_setuv(L, lua_upvalueindex(CONC_UP_SCHED), CONC_SCHED_UV_HOOKS);
    return 0;
}

/* core.exec(co): for conc.pcall on PUC 5.1, makes co the coroutine of the current task that
 * may park (nil: the task's own). Returns the previous one. */
static int l_exec(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t = s->current;
    lua_State *prev;
    if (t == NULL)
        return 0;
    prev = t->exec;
    t->exec = lua_isthread(L, 1) ? lua_tothread(L, 1) : t->co;
    lua_pushthread(prev);
    lua_xmove(prev, L, 1);
    return 1;
}

/* Pushes "source:line" for a site function at idx and its line, or nil. */
static void push_site(lua_State *L, int idx, int line)
{
    lua_Debug ar;
    if (!lua_isfunction(L, idx)) {
        lua_pushnil(L);
        return;
    }
    lua_pushvalue(L, idx);
    lua_getinfo(L, ">S", &ar);
    lua_pushfstring(L, "%s:%d", ar.short_src, line);
}

static void push_wait_info(lua_State *L, conc_task_t *t)
{
    int i;
    lua_pushstring(L, conc_status_names[t->status]);
    lua_setfield(L, -2, "status");
    if (t->status != CONC_TASK_BLOCKED)
        return;
    lua_pushstring(L, conc_reason_names[t->reason]);
    lua_setfield(L, -2, "reason");
    lua_createtable(L, t->nwait, 0);
    for (i = 0; i < t->nwait; i++) {
        lua_checkstack(t->co, 1);
        lua_pushvalue(t->co, t->waiters[i].objslot);
        lua_xmove(t->co, L, 1);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "on");
}

/* core.tasks(): a record per live task (and one for the top level when it is blocked),
 * for conc.dump: {task, id, name, status, reason, on = {objects}, site, co}. */
static int l_tasks(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t;
    int n = 0;
    lua_newtable(L);
    if (s->main.status == CONC_TASK_BLOCKED) {
        lua_newtable(L);
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "id");
        lua_pushliteral(L, "main");
        lua_setfield(L, -2, "name");
        push_wait_info(L, &s->main);
        lua_rawseti(L, -2, ++n);
    }
    for (t = s->live; t != NULL; t = t->live_next) {
        int ti;
        lua_newtable(L);
        conc_push_task(L, t);
        ti = lua_gettop(L);
        lua_pushvalue(L, ti);
        lua_setfield(L, -3, "task");
        lua_pushinteger(L, (lua_Integer)t->id);
        lua_setfield(L, -3, "id");
        conc_compat_getuv(L, ti, CONC_TASK_UV_NAME);
        lua_setfield(L, -3, "name");
        conc_compat_getuv(L, ti, CONC_TASK_UV_SITE);
        push_site(L, -1, t->site_line);
        lua_setfield(L, -4, "site");
        lua_pop(L, 1);
        conc_compat_getuv(L, ti, CONC_TASK_UV_CO);
        if (lua_isthread(L, -1))
            lua_setfield(L, -3, "co");
        else
            lua_pop(L, 1);
        lua_pop(L, 1);
        push_wait_info(L, t);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* core.site(obj): "source:line" where a task or channel was made, or nil. */
static int l_site(lua_State *L)
{
    int line;
    if (conc_checkud(L, 1, CONC_UP_CHAN_MT, sizeof(conc_chan_t)) != NULL) {
        line = ((conc_chan_t *)lua_touserdata(L, 1))->site_line;
        conc_compat_getuv(L, 1, CONC_CHAN_UV_SITE);
    } else if (conc_checkud(L, 1, CONC_UP_TASK_MT, sizeof(conc_task_t)) != NULL) {
        line = ((conc_task_t *)lua_touserdata(L, 1))->site_line;
        conc_compat_getuv(L, 1, CONC_TASK_UV_SITE);
    } else {
        return 0;
    }
    push_site(L, -1, line);
    return 1;
}

static int l_finish(lua_State *L)
{
    return conc_sched_finish_raise(L, 0);
}

const luaL_Reg conc_sched_funcs[] = {
    {"run", l_run},
    {"step", l_step},
    {"stats", l_stats},
    {"seed", l_seed},
    {"virtual_time", l_virtual_time},
    {"set_hooks", l_set_hooks},
    {"exec", l_exec},
    {"tasks", l_tasks},
    {"site", l_site},
    {"finish", l_finish},
    {NULL, NULL}
};
