/*
 * rate.c: the binding of conc.rate's limiter and reservation (bucket.c does the arithmetic;
 * lua/conc/rate.lua adds wait, rate.multi and rate.keyed on top of these).
 *
 * A limiter reads the time at each call: from its clock function when one was given (kept
 * as its user value; tests inject fake clocks), else from the scheduler (conc.now(), which
 * honours conc.virtual_time). A reservation's user value is its limiter, whose clock its
 * delay() reads and whose bucket its cancel() gives tokens back to.
 */
#include <math.h>
#include <string.h>
#include "bucket.h"
#include "conc.h"

/*** @module conc.rate */

#define CONC_RATE_TIME_SLACK 1e-9

typedef struct conc_limiter {
    const void *tag;  /* CONC_TAG(CONC_UP_LIMITER_MT) */
    conc_bucket_t b;
    double used;      /* the clock at the last call, for rate.keyed's eviction */
    int has_clock;
} conc_limiter_t;

typedef struct conc_rsv {
    const void *tag;  /* CONC_TAG(CONC_UP_RESERVATION_MT) */
    conc_reservation_t r;
} conc_rsv_t;

static conc_limiter_t *checklim(lua_State *L, int idx, const char *fname)
{
    conc_limiter_t *lim = (conc_limiter_t *)conc_checkud(L, idx, CONC_UP_LIMITER_MT, sizeof *lim);
    if (lim == NULL)
        conc_argerror(L, fname, idx == 1 ? 0 : idx, idx, "rate limiter");
    return lim;
}

static conc_rsv_t *checkrsv(lua_State *L, const char *fname)
{
    conc_rsv_t *rv = (conc_rsv_t *)conc_checkud(L, 1, CONC_UP_RESERVATION_MT, sizeof *rv);
    if (rv == NULL)
        conc_argerror(L, fname, 0, 1, "rate reservation");
    return rv;
}

/* The limiter's time now (the limiter is at idx); fname names the call in errors. */
static double now_of(lua_State *L, conc_limiter_t *lim, int idx, const char *fname)
{
    double now;
    if (!lim->has_clock) {
        now = conc_sched_now(conc_sched_get(L));
    } else {
        conc_compat_getuv(L, idx, 1);
        lua_call(L, 0, 1);
        if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) != lua_tonumber(L, -1))
            conc_error(L, "%s: the limiter's clock returned %s (a number of seconds expected)", fname,
                       conc_typename(L, -1));
        now = (double)lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lim->used = now;
    return now;
}

/* A limit: a number >= 0, math.huge (rate.inf) included. */
static double check_limit(lua_State *L, int idx, const char *fname, int arg)
{
    lua_Number l;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, arg, idx, "number");
    l = lua_tonumber(L, idx);
    if (!(l >= 0))
        conc_error(L, "%s: bad argument #%d (limit must be a number >= 0, got %s)", fname, arg,
                   l != l ? "nan" : lua_tostring(L, idx));
    return (double)l;
}

/* A burst, or a count of tokens: a whole number >= 0 (absent: dflt, when dflt >= 0). */
static double check_whole(lua_State *L, int idx, const char *fname, int arg, const char *what, double dflt)
{
    lua_Number n;
    if (dflt >= 0 && lua_isnoneornil(L, idx))
        return dflt;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, arg, idx, "number");
    n = lua_tonumber(L, idx);
    if (!(n >= 0) || n != floor(n) || n > 9007199254740992.0)
        conc_error(L, "%s: bad argument #%d (%s must be a whole number >= 0, got %s)", fname, arg, what,
                   n != n ? "nan" : lua_tostring(L, idx));
    return (double)n;
}

/* rate_limiter(limit, burst [, clock]) */
static int l_rate_limiter(lua_State *L)
{
    conc_limiter_t *lim;
    double limit, burst;
    int has_clock;
    conc_check_nargs(L, "rate.limiter", 3, 0);
    limit = check_limit(L, 1, "rate.limiter", 1);
    burst = check_whole(L, 2, "rate.limiter", 2, "burst", -1);
    has_clock = !lua_isnoneornil(L, 3);
    if (has_clock && lua_type(L, 3) != LUA_TFUNCTION)
        conc_error(L, "rate.limiter: bad option clock (function expected, got %s)", conc_typename(L, 3));
    lim = (conc_limiter_t *)conc_compat_newud(L, sizeof *lim, has_clock);
    memset(lim, 0, sizeof *lim);
    lim->tag = CONC_TAG(CONC_UP_LIMITER_MT);
    lim->has_clock = has_clock;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_LIMITER_MT));
    lua_setmetatable(L, -2);
    if (has_clock) {
        lua_pushvalue(L, 3);
        conc_compat_setuv(L, -2, 1);
    }
    conc_bucket_init(&lim->b, limit, burst, now_of(L, lim, lua_gettop(L), "rate.limiter"));
    return 1;
}

/***
 * A limiter, made by `rate.limiter`.
 * @type Limiter
 */

/***
 * Takes `n` tokens if they are there now, else takes nothing.
 * @int[opt=1] n the number of tokens, a whole number >= 0 (0 always succeeds)
 * @treturn boolean whether they were taken
 * @function allow
 */
static int lim_allow(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:allow");
    conc_reservation_t r;
    double n;
    conc_check_nargs(L, "lim:allow", 1, 1);
    n = check_whole(L, 2, "lim:allow", 1, "n", 1);
    lua_pushboolean(L, conc_bucket_reserve(&lim->b, now_of(L, lim, 1, "lim:allow"), n, 0, 0, &r));
    return 1;
}

static void push_reservation(lua_State *L, int limidx, const conc_reservation_t *r)
{
    conc_rsv_t *rv = (conc_rsv_t *)conc_compat_newud(L, sizeof *rv, 1);
    rv->tag = CONC_TAG(CONC_UP_RESERVATION_MT);
    rv->r = *r;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_RESERVATION_MT));
    lua_setmetatable(L, -2);
    lua_pushvalue(L, limidx);
    conc_compat_setuv(L, -2, 1);
}

/***
 * Books `n` tokens, maybe ahead of time: the caller may act after `Reservation:delay`
 * seconds, or give them back with `Reservation:cancel`.
 * @int[opt=1] n the number of tokens, a whole number >= 0
 * @treturn Reservation the booking; not ok (and taking nothing) when `n` exceeds the burst
 * or the tokens would never come
 * @function reserve
 */
static int lim_reserve(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:reserve");
    conc_reservation_t r;
    double n;
    conc_check_nargs(L, "lim:reserve", 1, 1);
    n = check_whole(L, 2, "lim:reserve", 1, "n", 1);
    conc_bucket_reserve(&lim->b, now_of(L, lim, 1, "lim:reserve"), n, HUGE_VAL, 0, &r);
    push_reservation(L, 1, &r);
    return 1;
}

/* rate_book(lim, n, ctx): the start of lim:wait once its arguments are checked. Returns
 * true when the tokens are there now; the reservation and its delay when the caller must
 * sleep; nil and ctx:err() when ctx is done (D1, before anything else); nil and "burst",
 * "deadline" or "never" when the wait is refused at once (R26, R28, R32, R13), taking
 * nothing. */
static int l_rate_book(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "rate_book");
    conc_ctx_t *x = conc_ctx_opt(L, 3, "lim:wait", 1);
    conc_reservation_t r;
    double n = check_whole(L, 2, "lim:wait", 2, "n", 1), max_wait = HUGE_VAL, now;
    int failed;
    if ((failed = conc_ctx_failed(L, x, 0)) != 0)
        return failed;
    if (n == 0) { /* R8: at once, even behind pending reservations */
        lua_pushboolean(L, 1);
        return 1;
    }
    if (n > lim->b.burst && lim->b.limit != HUGE_VAL) {
        lua_pushnil(L);
        lua_pushliteral(L, "burst");
        return 2;
    }
    /* A nanosecond of slack: the deadline and now are large times (the clock's epoch), so
     * their difference can come out a hair short of a wait that ends exactly at it (R31). */
    if (x != NULL && x->deadline != HUGE_VAL)
        max_wait = x->deadline - conc_sched_now(conc_sched_get(L)) + CONC_RATE_TIME_SLACK;
    now = now_of(L, lim, 1, "lim:wait");
    if (!conc_bucket_reserve(&lim->b, now, n, max_wait, 0, &r)) {
        lua_pushnil(L);
        if (max_wait == HUGE_VAL)
            lua_pushliteral(L, "never"); /* a limit of 0 with the bucket empty */
        else
            lua_pushliteral(L, "deadline");
        return 2;
    }
    if (r.act <= now) {
        lua_pushboolean(L, 1);
        return 1;
    }
    push_reservation(L, 1, &r);
    lua_pushnumber(L, r.act - now);
    return 2;
}

/* rate_wait_for(lim, n): seconds until n tokens are there, not booking them (rate.multi). */
static int l_rate_wait_for(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "rate_wait_for");
    double n = check_whole(L, 2, "rate_wait_for", 2, "n", 1);
    lua_pushnumber(L, conc_bucket_wait_for(&lim->b, now_of(L, lim, 1, "rate.multi"), n));
    return 1;
}

/* rate_reserve_at(lim, n, delay): books n tokens to act `delay` s from now, at the latest;
 * the reservation (rate.multi books every limiter for the same time). */
static int l_rate_reserve_at(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "rate_reserve_at");
    double n = check_whole(L, 2, "rate_reserve_at", 2, "n", 1);
    double delay = conc_checkduration(L, 3, "rate_reserve_at", 3);
    conc_reservation_t r;
    conc_bucket_reserve(&lim->b, now_of(L, lim, 1, "rate.multi"), n, delay, delay, &r);
    push_reservation(L, 1, &r);
    return 1;
}

/* rate_idle(lim, now, idle): whether rate.keyed may drop lim: unused for idle s, or holding
 * a full bucket with no reservation pending, so that a new limiter would be the same. */
static int l_rate_idle(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "rate_idle");
    double now = conc_checkduration(L, 2, "rate_idle", 2);
    double idle = conc_checkduration(L, 3, "rate_idle", 3);
    lua_pushboolean(L, now - lim->used >= idle ||
                           (conc_bucket_tokens_at(&lim->b, now) >= lim->b.burst && lim->b.last_event <= now));
    return 1;
}

/* rate_used(lim): the clock at lim's last call. */
static int l_rate_used(lua_State *L)
{
    lua_pushnumber(L, checklim(L, 1, "rate_used")->used);
    return 1;
}

/***
 * The limit.
 * @treturn number events per second (`rate.inf` for none)
 * @function limit
 */
static int lim_limit(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:limit");
    conc_check_nargs(L, "lim:limit", 0, 1);
    lua_pushnumber(L, lim->b.limit);
    return 1;
}

/***
 * The burst.
 * @treturn integer the bucket's size
 * @function burst
 */
static int lim_burst(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:burst");
    conc_check_nargs(L, "lim:burst", 0, 1);
    lua_pushinteger(L, (lua_Integer)lim->b.burst);
    return 1;
}

/***
 * The tokens in the bucket now; negative while tokens booked ahead of time are owed.
 * @treturn number the tokens
 * @function tokens
 */
static int lim_tokens(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:tokens");
    conc_check_nargs(L, "lim:tokens", 0, 1);
    lua_pushnumber(L, conc_bucket_tokens_at(&lim->b, now_of(L, lim, 1, "lim:tokens")));
    return 1;
}

/***
 * Changes the limit; the tokens are first brought up to now at the old limit.
 * @number limit the new limit, >= 0
 * @function set_limit
 */
static int lim_set_limit(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:set_limit");
    double limit;
    conc_check_nargs(L, "lim:set_limit", 1, 1);
    limit = check_limit(L, 2, "lim:set_limit", 1);
    conc_bucket_set_limit(&lim->b, now_of(L, lim, 1, "lim:set_limit"), limit);
    return 0;
}

/***
 * Changes the burst; the tokens are first brought up to now at the old settings.
 * @int burst the new burst, a whole number >= 0
 * @function set_burst
 */
static int lim_set_burst(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "lim:set_burst");
    double burst;
    conc_check_nargs(L, "lim:set_burst", 1, 1);
    burst = check_whole(L, 2, "lim:set_burst", 1, "burst", -1);
    conc_bucket_set_burst(&lim->b, now_of(L, lim, 1, "lim:set_burst"), burst);
    return 0;
}

static int lim_tostring(lua_State *L)
{
    conc_limiter_t *lim = checklim(L, 1, "tostring");
    if (lim->b.limit == HUGE_VAL)
        lua_pushfstring(L, "rate.limiter(inf, %d)", (int)lim->b.burst);
    else
        lua_pushfstring(L, "rate.limiter(%f, %d)", (lua_Number)lim->b.limit, (int)lim->b.burst);
    return 1;
}

/***
 * A reservation, made by `Limiter:reserve`: tokens booked, maybe ahead of time.
 * @type Reservation
 */

/***
 * Whether the tokens will be granted.
 * @treturn boolean false when `n` exceeds the burst or the tokens never come
 * @function ok
 */
static int rsv_ok(lua_State *L)
{
    conc_rsv_t *rv = checkrsv(L, "r:ok");
    conc_check_nargs(L, "r:ok", 0, 1);
    lua_pushboolean(L, rv->r.ok);
    return 1;
}

/* R12: how long until the reservation may act; math.huge when it is not ok. */
/***
 * How long until the booked tokens may be used (R12).
 * @treturn number seconds (0: now); `math.huge` when not ok
 * @function delay
 */
static int rsv_delay(lua_State *L)
{
    conc_rsv_t *rv = checkrsv(L, "r:delay");
    double d;
    conc_check_nargs(L, "r:delay", 0, 1);
    if (!rv->r.ok) {
        lua_pushnumber(L, HUGE_VAL);
        return 1;
    }
    conc_compat_getuv(L, 1, 1);
    d = rv->r.act - now_of(L, (conc_limiter_t *)lua_touserdata(L, -1), lua_gettop(L), "r:delay");
    lua_pushnumber(L, d > 0 ? d : 0);
    return 1;
}

/***
 * Gives the tokens back, as Go's `Reservation.Cancel` does: what later bookings do not
 * depend on is restored. A second call does nothing.
 * @function cancel
 */
static int rsv_cancel(lua_State *L)
{
    conc_rsv_t *rv = checkrsv(L, "r:cancel");
    conc_limiter_t *lim;
    conc_check_nargs(L, "r:cancel", 0, 1);
    conc_compat_getuv(L, 1, 1);
    lim = (conc_limiter_t *)lua_touserdata(L, -1);
    conc_bucket_cancel(&lim->b, now_of(L, lim, lua_gettop(L), "r:cancel"), &rv->r);
    return 0;
}

static int rsv_tostring(lua_State *L)
{
    conc_rsv_t *rv = checkrsv(L, "tostring");
    lua_pushstring(L, rv->r.ok ? "rate.reservation (ok)" : "rate.reservation (not ok)");
    return 1;
}

const luaL_Reg conc_rate_funcs[] = {
    {"rate_limiter", l_rate_limiter},
    {"rate_book", l_rate_book},
    {"rate_wait_for", l_rate_wait_for},
    {"rate_reserve_at", l_rate_reserve_at},
    {"rate_idle", l_rate_idle},
    {"rate_used", l_rate_used},
    {NULL, NULL}
};

const luaL_Reg conc_limiter_methods[] = {
    {"allow", lim_allow},
    {"reserve", lim_reserve},
    {"limit", lim_limit},
    {"burst", lim_burst},
    {"tokens", lim_tokens},
    {"set_limit", lim_set_limit},
    {"set_burst", lim_set_burst},
    {NULL, NULL}
};

const luaL_Reg conc_limiter_metamethods[] = {
    {"__tostring", lim_tostring},
    {NULL, NULL}
};

const luaL_Reg conc_reservation_methods[] = {
    {"ok", rsv_ok},
    {"delay", rsv_delay},
    {"cancel", rsv_cancel},
    {NULL, NULL}
};

const luaL_Reg conc_reservation_metamethods[] = {
    {"__tostring", rsv_tostring},
    {NULL, NULL}
};
