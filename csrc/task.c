/*
 * task.c: tasks as Lua sees them: conc.go, conc.self, conc.now, conc.yield, conc.sleep and
 * the task methods.
 *
 * A task is a userdata (conc.task) whose user values hold its coroutine, the function that
 * called conc.go (with site_line, for dumps and errors), its name and, once failed, its
 * error. Once a task has returned, its results stay on its coroutine's stack, so wait()
 * copies them out without any table.
 */
#include <stdlib.h>
#include <string.h>
#include "conc.h"

/*** @module conc */

/*** Tasks and the runtime.
 * @section runtime
 */

static conc_task_t *checktask(lua_State *L, int idx, const char *fname)
{
    conc_task_t *t = (conc_task_t *)conc_checkud(L, idx, CONC_UP_TASK_MT, sizeof(conc_task_t));
    if (t == NULL)
        conc_argerror(L, fname, idx - 1, idx, "task");
    return t;
}

/* Starts L[first](L[first+1 .. first+n-1]) as a task and pushes its handle. The task gets
 * its coroutine only when it first runs (conc_sched_start): until then the function, or a
 * table of the function and its arguments, waits in the coroutine's user value slot, so a
 * queue of tasks that have not started costs only their handles. */
conc_task_t *conc_task_spawn(lua_State *L, conc_sched_t *s, int first, int n)
{
    conc_task_t *t;
    int tidx, i, line;
    conc_sched_reserve(L, s);
    t = (conc_task_t *)conc_compat_newud(L, sizeof *t, CONC_TASK_NUV);
    memset(t, 0, sizeof *t);
    t->tag = CONC_TAG(CONC_UP_TASK_MT);
    t->ref = LUA_NOREF;
    t->id = ++s->next_task_id;
    t->status = CONC_TASK_READY;
    t->waiters = &t->w1;
    t->wcap = 1;
    t->timer.index = CONC_HEAP_NONE;
    t->timer.kind = CONC_HEAP_SLEEP;
    conc_waitq_init(&t->joiners);
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_TASK_MT));
    lua_setmetatable(L, -2);
    tidx = lua_gettop(L);
    if (n == 1) {
        lua_pushvalue(L, first);
    } else {
        lua_createtable(L, n, 0);
        for (i = 0; i < n; i++) {
            lua_pushvalue(L, first + i);
            lua_rawseti(L, -2, i + 1);
        }
    }
    conc_compat_setuv(L, tidx, CONC_TASK_UV_CO);
    conc_push_site(L, &line);
    t->site_line = line;
    conc_compat_setuv(L, tidx, CONC_TASK_UV_SITE);
    t->nargs = n;
    lua_pushvalue(L, tidx);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    conc_sched_spawned(s, t);
    return t;
}

/***
 * Starts `fn(...)` as a new task and returns its handle at once. The task has not run yet
 * (its status is `"ready"`): it runs when the caller blocks or yields (at the top level: at
 * its next blocking call, or in `conc.run` or `conc.step`). An error it raises goes to
 * whoever waits on it, or to `conc.errors.report` when nobody does.
 * @tparam function fn the task's body
 * @param ... the arguments of `fn`
 * @treturn Task the task's handle
 * @function go
 */
static int l_go(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TFUNCTION)
        return conc_argerror(L, "go", 1, 1, "function");
    conc_task_spawn(L, conc_sched_get(L), 1, lua_gettop(L));
    return 1;
}

/***
 * The running task.
 * @treturn ?Task the task that calls it, or nil at the top level
 * @function self
 */
static int l_self(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_check_nargs(L, "self", 0, 0);
    if (s->current == NULL)
        return 0;
    conc_push_task(L, s->current);
    return 1;
}

/***
 * The monotonic clock, in seconds; under `conc.virtual_time(true)`, the virtual clock.
 * @treturn number seconds since an arbitrary start
 * @function now
 */
static int l_now(lua_State *L)
{
    conc_check_nargs(L, "now", 0, 0);
    lua_pushnumber(L, conc_sched_now(conc_sched_get(L)));
    return 1;
}

/***
 * Lets the other ready tasks run; the caller runs again after them. At the top level, the
 * tasks that are ready run once, as in `conc.step(0)`.
 * @function yield
 */
static int l_yield(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t;
    conc_check_nargs(L, "yield", 0, 0);
    t = conc_sched_parker(L, s, "yield");
    if (t == &s->main) { /* the top level: the tasks ready now run once, as conc.step does */
        conc_sched_step(L, s, 0);
        return 0;
    }
    return conc_sched_park(L, s, t, CONC_WAIT_YIELD);
}

/* core.pass(): as yield where the caller may yield, else nothing. conc.net calls it now
 * and then, so that a loop of I/O calls that never have to wait (data already buffered,
 * a socket that takes every write) still lets other tasks, timers and I/O in. Never on
 * PUC 5.1, where a yield inside pcall or an iterator would raise. */
static int l_pass(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t = s->current;
    if (CONC_PUC51)
        return 0;
    if (t == NULL) {
        int is_main = lua_pushthread(L);
        lua_pop(L, 1);
        if (is_main && !s->driving)
            conc_sched_step(L, s, 0);
        return 0;
    }
    if (L != t->exec || !conc_compat_isyieldable(L))
        return 0;
    t->nwait = 0;
    t->timed = 0;
    return conc_sched_park(L, s, t, CONC_WAIT_YIELD);
}

/***
 * Blocks the caller for `d` seconds, at least; `d <= 0` returns at once.
 * @number d the duration in seconds
 * @tparam[opt] Context ctx ends the sleep early when it ends
 * @treturn[1] boolean true once `d` has passed
 * @return[2] nil when ctx ended first
 * @return[2] `ctx:err()`
 * @function sleep
 */
static int l_sleep(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_ctx_t *x;
    conc_task_t *t;
    double d;
    int n;
    conc_check_nargs(L, "sleep", 2, 0);
    d = conc_checkduration(L, 1, "sleep", 1);
    x = conc_ctx_opt(L, 2, "sleep", 2);
    if ((n = conc_ctx_failed(L, x, 0)) != 0) /* D1 */
        return n;
    if (d <= 0) { /* T5: returns at once */
        lua_pushboolean(L, 1);
        return 1;
    }
    if (conc_heap_reserve(&s->timers, s->timers.len + 1) != 0)
        return conc_error(L, "sleep: out of memory");
    t = conc_sched_parker(L, s, "sleep");
    t->timer.deadline = conc_sched_now(s) + d;
    t->timed = 1;
    conc_task_wait_ctx(L, t, x, 2);
    return conc_sched_park(L, s, t, CONC_WAIT_SLEEP);
}

/***
 * A task: the handle `conc.go` returns. Its status is `"ready"`, `"running"`,
 * `"blocked"`, `"done"` (it returned) or `"failed"` (it raised). A task still alive when
 * the main task (or the script) ends is abandoned, as in Go: it never runs again and
 * keeps its last status.
 * @type Task
 */

/***
 * Waits until the task has ended. A task cannot wait for itself (that raises); waiting on
 * an abandoned task blocks for ever.
 * @tparam[opt] Context ctx ends the wait early when it ends
 * @treturn[1] boolean true when the task returned
 * @return[1] ... the task's results
 * @return[2] nil when the task failed, or ctx ended first
 * @return[2] the task's error (a conc error with its traceback), or `ctx:err()`
 * @function wait
 */
static int t_wait(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_task_t *t = checktask(L, 1, "task:wait"), *me;
    conc_ctx_t *x;
    int n;
    conc_check_nargs(L, "task:wait", 1, 1);
    x = conc_ctx_opt(L, 2, "task:wait", 1);
    if ((n = conc_ctx_failed(L, x, 0)) != 0) /* D1 */
        return n;
    if (t->status == CONC_TASK_DONE || t->status == CONC_TASK_FAILED)
        return conc_task_outcome(L, t, 1, L);
    if (t == s->current)
        return conc_error(L, "task:wait: a task cannot wait for itself");
    me = conc_sched_parker(L, s, "task:wait");
    conc_task_wait_on(L, me, &t->joiners, 0, 0);
    conc_task_wait_ctx(L, me, x, 2);
    return conc_sched_park(L, s, me, CONC_WAIT_TASK);
}

/***
 * The task's id, unique in this Lua state (`task#7` in dumps and errors).
 * @treturn integer the id
 * @function id
 */
static int t_id(lua_State *L)
{
    conc_task_t *t = checktask(L, 1, "task:id");
    conc_check_nargs(L, "task:id", 0, 1);
    lua_pushinteger(L, (lua_Integer)t->id);
    return 1;
}

/***
 * The task's name, shown in dumps and errors; sets it first when `new` is given.
 * @tparam[opt] string new the new name
 * @treturn ?string the name, or nil when it has none
 * @function name
 */
static int t_name(lua_State *L)
{
    checktask(L, 1, "task:name");
    conc_check_nargs(L, "task:name", 1, 1);
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TSTRING)
            return conc_argerror(L, "task:name", 1, 2, "string");
        lua_pushvalue(L, 2);
        conc_compat_setuv(L, 1, CONC_TASK_UV_NAME);
    }
    conc_compat_getuv(L, 1, CONC_TASK_UV_NAME);
    return 1;
}

/***
 * The task's status.
 * @treturn string `"ready"`, `"running"`, `"blocked"`, `"done"` or `"failed"`
 * @function status
 */
static int t_status(lua_State *L)
{
    conc_task_t *t = checktask(L, 1, "task:status");
    conc_check_nargs(L, "task:status", 0, 1);
    lua_pushstring(L, conc_status_names[t->status]);
    return 1;
}

static int t_tostring(lua_State *L)
{
    conc_task_t *t = checktask(L, 1, "task:__tostring");
    conc_compat_getuv(L, 1, CONC_TASK_UV_NAME);
    if (lua_isstring(L, -1))
        lua_pushfstring(L, "task#%d (%s)", (int)t->id, lua_tostring(L, -1));
    else
        lua_pushfstring(L, "task#%d", (int)t->id);
    return 1;
}

static int t_gc(lua_State *L)
{
    conc_task_t *t = (conc_task_t *)lua_touserdata(L, 1);
    if (t->waiters != &t->w1) {
        free(t->waiters);
        t->waiters = &t->w1;
    }
    return 0;
}

const luaL_Reg conc_task_funcs[] = {
    {"go", l_go},
    {"self", l_self},
    {"now", l_now},
    {"yield", l_yield},
    {"pass", l_pass},
    {"sleep", l_sleep},
    {NULL, NULL}
};

const luaL_Reg conc_task_methods[] = {
    {"wait", t_wait},
    {"id", t_id},
    {"name", t_name},
    {"status", t_status},
    {NULL, NULL}
};

const luaL_Reg conc_task_metamethods[] = {
    {"__tostring", t_tostring},
    {"__gc", t_gc},
    {NULL, NULL}
};
