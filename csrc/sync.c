/*
 * sync.c: waitgroups (conc.waitgroup), weighted semaphores (conc.semaphore) and mutexes
 * (conc.mutex), after Go's sync.WaitGroup, golang.org/x/sync/semaphore and sync.Mutex.
 *
 * Invariants:
 * - A waitgroup's counter is never negative; while it is 0 nobody waits on it.
 * - A semaphore holds cur of size units (0 <= cur <= size). Its waiters are served strictly
 *   FIFO: after every operation the queue is empty or its head does not fit (size - cur <
 *   head's weight), so a large request is never starved by smaller ones behind it (M4),
 *   and nobody takes units past a waiting task (M3). A request larger than size never
 *   queues: it waits for its ctx only, so it blocks nobody (M5). A waiter's weight is on
 *   its own stack (valslot), like a sender's value.
 * - A waiter whose ctx ends leaves the queue (the queue's on_leave hook), and the waiters
 *   behind it are served at once (M6). A waiter granted units was granted them: it
 *   returns true even if its ctx ends before it runs again (D2), so units are never lost
 *   or held twice (M8).
 * - A mutex is a semaphore of size 1 with the words of a lock: unlock hands the lock to the
 *   first waiter.
 */
#include <math.h>
#include <string.h>
#include "conc.h"

/*** @module conc */

/*** Waitgroups, semaphores and mutexes.
 * @section sync
 */

typedef struct conc_waitgroup {
    const void *tag;       /* CONC_TAG(CONC_UP_WAITGROUP_MT) */
    conc_waitq_t waiters;
    lua_Integer count;
    unsigned id;
} conc_waitgroup_t;

typedef struct conc_sema {
    const void *tag;       /* CONC_TAG(CONC_UP_SEMAPHORE_MT) or CONC_TAG(CONC_UP_MUTEX_MT) */
    conc_waitq_t waiters;
    lua_Integer size, cur;
    unsigned id;
} conc_sema_t;

/* A whole number >= 0 at idx (absent: 1), as a weight or a count. */
static lua_Integer check_count(lua_State *L, int idx, const char *fname, int arg, const char *what)
{
    lua_Number n;
    if (lua_isnoneornil(L, idx))
        return 1;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, arg, idx, "number");
    n = lua_tonumber(L, idx);
    if (!(n >= 0) || n != floor(n) || n > 9007199254740992.0)
        conc_error(L, "%s: bad argument #%d (%s must be a whole number >= 0, got %s)", fname, arg, what,
                   lua_tostring(L, idx));
    return (lua_Integer)n;
}

/* --- waitgroup ------------------------------------------------------------------------- */

static conc_waitgroup_t *checkwg(lua_State *L, const char *fname)
{
    conc_waitgroup_t *g = (conc_waitgroup_t *)conc_checkud(L, 1, CONC_UP_WAITGROUP_MT, sizeof *g);
    if (g == NULL)
        conc_argerror(L, fname, 0, 1, "waitgroup");
    return g;
}

/***
 * A waitgroup, as Go's `sync.WaitGroup`: a counter that tasks can wait to see reach 0.
 * @treturn WaitGroup the waitgroup, its counter at 0
 * @function waitgroup
 */
static int l_waitgroup(lua_State *L)
{
    conc_waitgroup_t *g;
    conc_check_nargs(L, "waitgroup", 0, 0);
    g = (conc_waitgroup_t *)conc_compat_newud(L, sizeof *g, 0);
    memset(g, 0, sizeof *g);
    g->tag = CONC_TAG(CONC_UP_WAITGROUP_MT);
    conc_waitq_init(&g->waiters);
    g->id = ++conc_sched_get(L)->next_obj_id;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_WAITGROUP_MT));
    lua_setmetatable(L, -2);
    return 1;
}

/* Adds delta to the counter; at 0 every waiter is released. */
static void wg_add(lua_State *L, conc_waitgroup_t *g, lua_Integer delta, const char *fname)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_waiter_t *w;
    if (g->count + delta < 0)
        conc_error(L, "%s: negative counter (%s)", fname,
                   delta == -1 ? "done called more often than add counted" : "add would take it below 0");
    g->count += delta;
    if (g->count != 0)
        return;
    while ((w = conc_waitq_pop(&g->waiters)) != NULL) {
        conc_task_t *t = (conc_task_t *)w->owner;
        lua_checkstack(t->co, 1);
        lua_pushboolean(t->co, 1);
        conc_sched_wake(s, t, 1);
    }
}

/***
 * A waitgroup, made by `conc.waitgroup`.
 * @type WaitGroup
 */

/***
 * Adds `n` to the counter; when it reaches 0, every waiter is released.
 * @int n a whole number, negative to subtract
 * @raise when the counter would go below 0
 * @function add
 */
static int wg_add_m(lua_State *L)
{
    conc_waitgroup_t *g = checkwg(L, "wg:add");
    lua_Number n;
    conc_check_nargs(L, "wg:add", 1, 1);
    if (lua_type(L, 2) != LUA_TNUMBER)
        return conc_argerror(L, "wg:add", 1, 2, "number");
    n = lua_tonumber(L, 2);
    if (n != floor(n) || fabs(n) > 9007199254740992.0)
        return conc_error(L, "wg:add: bad argument #1 (a whole number expected, got %s)", lua_tostring(L, 2));
    wg_add(L, g, (lua_Integer)n, "wg:add");
    return 0;
}

/***
 * `wg:add(-1)`: one task of the group is done.
 * @raise when the counter would go below 0
 * @function done
 */
static int wg_done(lua_State *L)
{
    conc_waitgroup_t *g = checkwg(L, "wg:done");
    conc_check_nargs(L, "wg:done", 0, 1);
    wg_add(L, g, -1, "wg:done");
    return 0;
}

/***
 * Waits until the counter is 0.
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @treturn[1] boolean true once the counter is 0 (at once if it is)
 * @return[2] nil when ctx ended first
 * @return[2] `ctx:err()`
 * @function wait
 */
static int wg_wait(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_waitgroup_t *g = checkwg(L, "wg:wait");
    conc_ctx_t *x;
    conc_task_t *t;
    int n;
    conc_check_nargs(L, "wg:wait", 1, 1);
    x = conc_ctx_opt(L, 2, "wg:wait", 1);
    if ((n = conc_ctx_failed(L, x, 0)) != 0) /* D1 */
        return n;
    if (g->count == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_settop(L, 2);
    t = conc_sched_parker(L, s, "wg:wait");
    conc_task_wait_on(L, t, &g->waiters, 0, 0);
    conc_task_wait_ctx(L, t, x, 2);
    return conc_sched_park(L, s, t, CONC_WAIT_WAITGROUP);
}

static int wg_tostring(lua_State *L)
{
    conc_waitgroup_t *g = checkwg(L, "wg:__tostring");
    lua_pushfstring(L, "waitgroup#%d (count %d)", (int)g->id, (int)g->count);
    return 1;
}

/* --- semaphore and mutex -------------------------------------------------------------- */

static conc_sema_t *checksema(lua_State *L, int mt, const char *fname)
{
    conc_sema_t *m = (conc_sema_t *)conc_checkud(L, 1, mt, sizeof *m);
    if (m == NULL)
        conc_argerror(L, fname, 0, 1, mt == CONC_UP_MUTEX_MT ? "mutex" : "semaphore");
    return m;
}

/* Grants units to the waiters at the head of the queue, in order, while they fit. */
static void serve(conc_sched_t *s, conc_sema_t *m)
{
    conc_waiter_t *w;
    while ((w = m->waiters.head) != NULL) {
        conc_task_t *t = (conc_task_t *)w->owner;
        lua_Integer n = lua_tointeger(t->co, w->valslot);
        if (m->size - m->cur < n)
            break;
        m->cur += n;
        conc_waitq_remove(w);
        lua_checkstack(t->co, 1);
        lua_pushboolean(t->co, 1);
        conc_sched_wake(s, t, 1);
    }
}

/* on_leave of the queue: a waiter gave up (M6). */
static void sema_left(conc_waitq_t *q, void *s)
{
    serve((conc_sched_t *)s, conc_container_of(q, conc_sema_t, waiters));
}

static conc_sema_t *new_sema(lua_State *L, int mt, lua_Integer size)
{
    conc_sema_t *m = (conc_sema_t *)conc_compat_newud(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    m->tag = CONC_TAG(mt);
    conc_waitq_init(&m->waiters);
    m->waiters.on_leave = sema_left;
    m->size = size;
    m->id = ++conc_sched_get(L)->next_obj_id;
    lua_pushvalue(L, lua_upvalueindex(mt));
    lua_setmetatable(L, -2);
    return m;
}

static int try_take(conc_sema_t *m, lua_Integer n)
{
    if (m->size - m->cur < n || m->waiters.head != NULL) /* M3: no barging */
        return 0;
    m->cur += n;
    return 1;
}

/* Acquires n units, or waits for them: stack [self, ctx or nil, n]. */
static int acquire(lua_State *L, conc_sema_t *m, lua_Integer n, const char *fname, conc_reason_t reason)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *x = conc_ctx_opt(L, 2, fname, 1);
    conc_task_t *t;
    int r;
    if ((r = conc_ctx_failed(L, x, 0)) != 0) /* D1, M7: even when units are free */
        return r;
    if (try_take(m, n)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    t = conc_sched_parker(L, s, fname);
    if (n <= m->size) /* else it can never be granted: it waits for its ctx only (M5) */
        conc_task_wait_on(L, t, &m->waiters, 3, 0);
    conc_task_wait_ctx(L, t, x, 2);
    return conc_sched_park(L, s, t, reason);
}

/*** Waitgroups, semaphores and mutexes.
 * @section sync
 */

/***
 * A weighted semaphore of `n` units, as Go's `golang.org/x/sync/semaphore`. It is
 * strictly first come, first served: while anyone waits, `acquire` queues and
 * `try_acquire` fails even when units are free, and `release` serves the waiters in
 * order, so a large request is never starved by smaller ones.
 * @int n the number of units, a whole number >= 0
 * @treturn Semaphore the semaphore, all its units free
 * @function semaphore
 */
static int l_semaphore(lua_State *L)
{
    conc_check_nargs(L, "semaphore", 1, 0);
    if (lua_isnoneornil(L, 1))
        return conc_argerror(L, "semaphore", 1, 1, "number");
    new_sema(L, CONC_UP_SEMAPHORE_MT, check_count(L, 1, "semaphore", 1, "size"));
    return 1;
}

/* s:acquire([ctx,] [n]) */
/***
 * A semaphore, made by `conc.semaphore`.
 * @type Semaphore
 */

/***
 * Takes `w` units, waiting until they are free. A request larger than the semaphore can
 * never be granted: it waits for its ctx only (without one, for ever) and blocks nobody
 * behind it. Units granted are the caller's even if its ctx ends right after.
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @int[opt=1] w the weight, a whole number >= 0
 * @treturn[1] boolean true once the units are taken
 * @return[2] nil when ctx ended first (nothing is taken)
 * @return[2] `ctx:err()`
 * @function acquire
 */
static int sema_acquire(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_SEMAPHORE_MT, "s:acquire");
    lua_Integer n;
    conc_check_nargs(L, "s:acquire", 2, 1);
    if (lua_type(L, 2) == LUA_TNUMBER) { /* s:acquire(n) */
        if (lua_gettop(L) > 2)
            return conc_argerror(L, "s:acquire", 1, 2, "ctx or nil");
        lua_pushnil(L);
        lua_insert(L, 2);
    }
    lua_settop(L, 3);
    n = check_count(L, 3, "s:acquire", 2, "weight");
    lua_pushinteger(L, n);
    lua_replace(L, 3);
    return acquire(L, m, n, "s:acquire", CONC_WAIT_ACQUIRE);
}

/***
 * Takes `w` units only if they are free now and nobody is waiting.
 * @int[opt=1] w the weight
 * @treturn boolean whether they were taken
 * @function try_acquire
 */
static int sema_try_acquire(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_SEMAPHORE_MT, "s:try_acquire");
    conc_check_nargs(L, "s:try_acquire", 1, 1);
    lua_pushboolean(L, try_take(m, check_count(L, 2, "s:try_acquire", 1, "weight")));
    return 1;
}

/***
 * Gives back `w` units, and grants the waiters at the head of the queue what now fits.
 * @int[opt=1] w the weight
 * @raise when more is released than is held
 * @function release
 */
static int sema_release(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_SEMAPHORE_MT, "s:release");
    lua_Integer n;
    conc_check_nargs(L, "s:release", 1, 1);
    n = check_count(L, 2, "s:release", 1, "weight");
    if (n > m->cur)
        return conc_error(L, "s:release: released more than held (releasing %d, held %d)", (int)n, (int)m->cur);
    m->cur -= n;
    serve(conc_sched_get(L), m);
    return 0;
}

static int sema_tostring(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_SEMAPHORE_MT, "s:__tostring");
    lua_pushfstring(L, "semaphore#%d (%d of %d held)", (int)m->id, (int)m->cur, (int)m->size);
    return 1;
}

/*** Waitgroups, semaphores and mutexes.
 * @section sync
 */

/***
 * A mutex: a semaphore of one unit with the words of a lock. It is strictly first come,
 * first served (`unlock` hands the lock to the longest waiter), and not bound to a task:
 * any task may unlock it.
 * @treturn Mutex the mutex, unlocked
 * @function mutex
 */
static int l_mutex(lua_State *L)
{
    conc_check_nargs(L, "mutex", 0, 0);
    new_sema(L, CONC_UP_MUTEX_MT, 1);
    return 1;
}

/* m:lock([ctx]) */
/***
 * A mutex, made by `conc.mutex`.
 * @type Mutex
 */

/***
 * Locks the mutex, waiting for it to be unlocked if need be. A lock handed to the caller
 * is its own even if its ctx ends right after.
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @treturn[1] boolean true once locked
 * @return[2] nil when ctx ended first (the mutex is not locked by this call)
 * @return[2] `ctx:err()`
 * @function lock
 */
static int mutex_lock(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_MUTEX_MT, "m:lock");
    conc_check_nargs(L, "m:lock", 1, 1);
    lua_settop(L, 2);
    lua_pushinteger(L, 1);
    return acquire(L, m, 1, "m:lock", CONC_WAIT_LOCK);
}

/***
 * Locks the mutex only if it is unlocked and nobody is waiting.
 * @treturn boolean whether it was locked
 * @function try_lock
 */
static int mutex_try_lock(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_MUTEX_MT, "m:try_lock");
    conc_check_nargs(L, "m:try_lock", 0, 1);
    lua_pushboolean(L, try_take(m, 1));
    return 1;
}

/***
 * Unlocks the mutex, handing it to the first waiter if there is one.
 * @raise when the mutex is not locked
 * @function unlock
 */
static int mutex_unlock(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_MUTEX_MT, "m:unlock");
    conc_check_nargs(L, "m:unlock", 0, 1);
    if (m->cur == 0)
        return conc_error(L, "m:unlock: unlock of an unlocked mutex");
    m->cur = 0;
    serve(conc_sched_get(L), m);
    return 0;
}

static int mutex_tostring(lua_State *L)
{
    conc_sema_t *m = checksema(L, CONC_UP_MUTEX_MT, "m:__tostring");
    lua_pushfstring(L, "mutex#%d (%s)", (int)m->id, m->cur ? "locked" : "unlocked");
    return 1;
}

const luaL_Reg conc_sync_funcs[] = {
    {"waitgroup", l_waitgroup},
    {"semaphore", l_semaphore},
    {"mutex", l_mutex},
    {NULL, NULL}
};

const luaL_Reg conc_waitgroup_methods[] = {
    {"add", wg_add_m},
    {"done", wg_done},
    {"wait", wg_wait},
    {NULL, NULL}
};

const luaL_Reg conc_waitgroup_metamethods[] = {
    {"__tostring", wg_tostring},
    {NULL, NULL}
};

const luaL_Reg conc_semaphore_methods[] = {
    {"acquire", sema_acquire},
    {"try_acquire", sema_try_acquire},
    {"release", sema_release},
    {NULL, NULL}
};

const luaL_Reg conc_semaphore_metamethods[] = {
    {"__tostring", sema_tostring},
    {NULL, NULL}
};

const luaL_Reg conc_mutex_methods[] = {
    {"lock", mutex_lock},
    {"try_lock", mutex_try_lock},
    {"unlock", mutex_unlock},
    {NULL, NULL}
};

const luaL_Reg conc_mutex_metamethods[] = {
    {"__tostring", mutex_tostring},
    {NULL, NULL}
};
