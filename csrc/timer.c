/*
 * timer.c: conc.after, conc.timer and conc.ticker, with Go 1.23 semantics.
 *
 * A timer is a channel of capacity 1 that only the runtime sends on (recv_only), with a
 * node in the scheduler's timer heap. The channel owns the node: it is removed by stop,
 * reset and the channel's __gc, so an unreferenced timer is collected and never fires
 * (T6). The scheduler finds the channel from the node through a weak table (a pending
 * timer must not keep its channel alive). Firing sends conc.now() without blocking: to a
 * waiting receiver, else into the buffer, else (a ticker whose reader is slow) the tick is
 * dropped. stop and reset drain the buffer, so no stale value is received after them
 * (T2, T3); both return true when the timer was pending (its value not yet received).
 * A conc.timer or conc.ticker handle is a small userdata whose user value is the channel.
 */
#include <math.h>
#include "conc.h"

/*** @module conc */

/*** Timers.
 * They follow Go 1.23: after `stop()` or `reset()` no stale value is received. A timer
 * nobody references any more is collected and never fires.
 * @section timers
 */

typedef struct conc_timer {
    const void *tag; /* CONC_TAG(CONC_UP_TIMER_MT) */
    conc_chan_t *c;
    int ticker;
} conc_timer_t;

static void arm(lua_State *L, conc_sched_t *s, conc_chan_t *c, double d)
{
    if (conc_heap_reserve(&s->timers, s->timers.len + 1) != 0)
        conc_error(L, "timer: out of memory");
    c->tnode.deadline = conc_sched_now(s) + (d > 0 ? d : 0);
    conc_heap_push(&s->timers, &c->tnode);
}

/* Pushes a new timer channel firing in d s (then every `period` s if period > 0). */
static conc_chan_t *new_timer_chan(lua_State *L, conc_sched_t *s, double d, double period)
{
    conc_chan_t *c = conc_chan_new(L, s, 1);
    c->recv_only = 1;
    c->period = period;
    conc_sched_track(L, c, -1);
    arm(L, s, c, d);
    return c;
}

void conc_timer_fire(conc_sched_t *s, lua_State *L, conc_chan_t *c, double now)
{
    int cidx;
    if (!conc_sched_find(L, c)) /* being collected */
        return;
    cidx = lua_gettop(L);
    lua_pushnumber(L, now);
    conc_chan_trysend(L, s, c, cidx, cidx + 1);
    lua_pop(L, 2);
    if (c->period > 0) {
        /* the next tick stays on the phase of the start, skipping the ones missed */
        double next = c->tnode.deadline + c->period;
        if (next <= now)
            next += c->period * floor((now - next) / c->period + 1);
        if (next <= now) /* a period too small to move the clock still moves forward */
            next = nextafter(now, INFINITY);
        c->tnode.deadline = next;
        conc_heap_push(&s->timers, &c->tnode); /* it was just removed: there is room */
    }
}

static double check_period(lua_State *L, int idx, const char *fname)
{
    double d = conc_checkduration(L, idx, fname, 1);
    if (!(d > 0))
        conc_error(L, "%s: bad argument #1 (positive duration expected, got %s)", fname, lua_tostring(L, idx));
    return d;
}

/***
 * A channel that receives `conc.now()` once, `d` seconds from now (at once for `d <= 0`).
 * Nothing else can send on it or close it.
 * @number d the delay in seconds
 * @treturn Channel the channel
 * @function after
 */
static int l_after(lua_State *L)
{
    double d;
    conc_check_nargs(L, "after", 1, 0);
    d = conc_checkduration(L, 1, "after", 1);
    new_timer_chan(L, conc_sched_get(L), d, 0);
    return 1;
}

static int new_handle(lua_State *L, double d, double period)
{
    conc_sched_t *s = conc_sched_get(L);
    conc_timer_t *tm = (conc_timer_t *)conc_compat_newud(L, sizeof *tm, 1);
    tm->tag = CONC_TAG(CONC_UP_TIMER_MT);
    tm->c = NULL;
    tm->ticker = period > 0;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_TIMER_MT));
    lua_setmetatable(L, -2);
    tm->c = new_timer_chan(L, s, d, period);
    conc_compat_setuv(L, -2, 1);
    return 1;
}

/***
 * A timer that sends `conc.now()` on its channel once, `d` seconds from now, unless it is
 * stopped or reset first.
 * @number d the delay in seconds (`d <= 0`: at once)
 * @treturn Timer the timer
 * @function timer
 */
static int l_timer(lua_State *L)
{
    conc_check_nargs(L, "timer", 1, 0);
    return new_handle(L, conc_checkduration(L, 1, "timer", 1), 0);
}

/***
 * A ticker: a timer that sends `conc.now()` on its channel every `d` seconds, on the phase
 * of its start. The channel holds one tick: ticks a slow reader missed are dropped, as in
 * Go. A ticker nobody references any more stops.
 * @number d the period in seconds, > 0
 * @treturn Timer the ticker
 * @function ticker
 */
static int l_ticker(lua_State *L)
{
    double d;
    conc_check_nargs(L, "ticker", 1, 0);
    d = check_period(L, 1, "ticker");
    return new_handle(L, d, d);
}

static conc_timer_t *checktimer(lua_State *L, int idx, const char *fname)
{
    conc_timer_t *tm = (conc_timer_t *)conc_checkud(L, idx, CONC_UP_TIMER_MT, sizeof(conc_timer_t));
    if (tm == NULL)
        conc_argerror(L, fname, idx - 1, idx, "timer");
    return tm;
}

/* Stops the timer and drops an unreceived value; pushes the channel at the top. Returns
 * whether the timer was pending. */
static int disarm(lua_State *L, conc_timer_t *tm)
{
    conc_chan_t *c = tm->c;
    int pending = conc_heap_contains(&c->tnode) || c->ring.len > 0;
    conc_heap_remove(&conc_sched_get(L)->timers, &c->tnode);
    conc_compat_getuv(L, 1, 1);
    conc_chan_discard(L, c, lua_gettop(L));
    return pending;
}

/***
 * A timer or ticker, made by `conc.timer` or `conc.ticker`.
 * @type Timer
 */

/***
 * The channel the timer sends on; receive from it, or use it as a `conc.select` case.
 * @treturn Channel the same channel at every call
 * @function chan
 */
static int tm_chan(lua_State *L)
{
    checktimer(L, 1, "t:chan");
    conc_check_nargs(L, "t:chan", 0, 1);
    conc_compat_getuv(L, 1, 1);
    return 1;
}

/***
 * Stops the timer (or ticker) and drops a value it sent that nobody received yet.
 * @treturn boolean true if the timer was pending (its value not yet received)
 * @function stop
 */
static int tm_stop(lua_State *L)
{
    conc_timer_t *tm = checktimer(L, 1, "t:stop");
    conc_check_nargs(L, "t:stop", 0, 1);
    lua_pushboolean(L, disarm(L, tm));
    return 1;
}

/***
 * Stops the timer, as `stop` does, and starts it again: a timer fires `d` seconds from
 * now; a ticker ticks every `d` seconds from now on.
 * @number d the new delay (a ticker's new period, > 0)
 * @treturn boolean true if the timer was pending before the reset
 * @function reset
 */
static int tm_reset(lua_State *L)
{
    conc_timer_t *tm = checktimer(L, 1, "t:reset");
    double d;
    int pending;
    conc_check_nargs(L, "t:reset", 1, 1);
    d = tm->ticker ? check_period(L, 2, "t:reset") : conc_checkduration(L, 2, "t:reset", 1);
    pending = disarm(L, tm);
    if (tm->ticker)
        tm->c->period = d;
    arm(L, conc_sched_get(L), tm->c, d);
    lua_pushboolean(L, pending);
    return 1;
}

static int tm_tostring(lua_State *L)
{
    conc_timer_t *tm = checktimer(L, 1, "t:__tostring");
    lua_pushfstring(L, "%s on chan#%d", tm->ticker ? "ticker" : "timer", (int)tm->c->id);
    return 1;
}

const luaL_Reg conc_timer_funcs[] = {
    {"after", l_after},
    {"timer", l_timer},
    {"ticker", l_ticker},
    {NULL, NULL}
};

const luaL_Reg conc_timer_methods[] = {
    {"chan", tm_chan},
    {"stop", tm_stop},
    {"reset", tm_reset},
    {NULL, NULL}
};

const luaL_Reg conc_timer_metamethods[] = {
    {"__tostring", tm_tostring},
    {NULL, NULL}
};
