/*
 * signal.c: watching POSIX signals on libuv, for conc.signal and conc.signals (in
 * conc/init.lua): core.signal_watch(fname, target, names...) delivers each signal's name
 * to target, a channel (sent without blocking: dropped when it is full, as Go's
 * signal.Notify) or a function (called from the scheduler, so it must not block).
 *
 * Invariants:
 * - A watch is anchored in the registry from its start until stop(): like Go's
 *   signal.Notify, it is not lost when the program drops its handle. Its target is its
 *   user value.
 * - Its uv_signal_t handles live in a malloc'ed block freed once every one of them is
 *   closed. They keep the loop alive while the watch is on: a program waiting for a
 *   signal is not deadlocked.
 * - A watched signal no longer has its default action (libuv restores it once nobody
 *   watches that signal).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "conc.h"

typedef struct sig_block {
    conc_closer_t closer; /* first: see conc_closer_t */
    conc_sched_t *s;
    struct conc_sigwatch *owner; /* NULL once stopped */
    int n, open;          /* handles, and those not yet closed */
    uv_signal_t h[1];     /* n of them */
} sig_block_t;

typedef struct conc_sigwatch {
    const void *tag;      /* CONC_TAG(CONC_UP_SIGWATCH_MT) */
    sig_block_t *b;       /* NULL once stopped */
    int ref;              /* the registry anchor while on */
    unsigned id;
} conc_sigwatch_t;

static const struct {
    const char *name;
    int num;
} signal_names[] = {
    {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}, {"SIGTERM", SIGTERM},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},
    {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
    {"SIGTTOU", SIGTTOU}, {"SIGWINCH", SIGWINCH},
};
#define NSIGNALS ((int)(sizeof signal_names / sizeof signal_names[0]))

static int signal_number(const char *name)
{
    int i;
    for (i = 0; i < NSIGNALS; i++)
        if (strcmp(signal_names[i].name, name) == 0)
            return signal_names[i].num;
    return 0;
}

static const char *signal_name(int num)
{
    int i;
    for (i = 0; i < NSIGNALS; i++)
        if (signal_names[i].num == num)
            return signal_names[i].name;
    return "SIG?";
}

static void on_closed(uv_handle_t *h)
{
    sig_block_t *b = (sig_block_t *)h->data;
    if (--b->open == 0)
        free(b);
}

static void close_block(conc_closer_t *closer)
{
    sig_block_t *b = (sig_block_t *)closer;
    int i;
    if (b->owner != NULL)
        b->owner->b = NULL;
    b->owner = NULL;
    for (i = 0; i < b->n; i++)
        if (!uv_is_closing((uv_handle_t *)&b->h[i]))
            uv_close((uv_handle_t *)&b->h[i], on_closed);
}

static void on_signal(uv_signal_t *h, int signum)
{
    sig_block_t *b = (sig_block_t *)h->data;
    conc_sched_t *s = b->s;
    lua_State *L = s->L; /* set while the scheduler runs libuv; NULL as it closes */
    int top, widx;
    if (b->owner == NULL || L == NULL)
        return;
    top = lua_gettop(L);
    lua_checkstack(L, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->owner->ref);
    widx = lua_gettop(L);
    conc_compat_getuv(L, widx, 1);
    lua_pushstring(L, signal_name(signum));
    if (lua_isfunction(L, widx + 1)) {
        lua_pcall(L, 1, 0, 0); /* conc's own function (it cancels a ctx): it cannot fail */
    } else {
        conc_chan_t *c = (conc_chan_t *)lua_touserdata(L, widx + 1);
        if (!c->closed)
            conc_chan_trysend(L, s, c, widx + 1, widx + 2);
    }
    lua_settop(L, top);
}

static conc_sigwatch_t *checkwatch(lua_State *L, const char *fname)
{
    conc_sigwatch_t *w = (conc_sigwatch_t *)conc_checkud(L, 1, CONC_UP_SIGWATCH_MT, sizeof(conc_sigwatch_t));
    if (w == NULL)
        conc_argerror(L, fname, 0, 1, "signal watch");
    return w;
}

static void stop_watch(lua_State *L, conc_sigwatch_t *w)
{
    if (w->b != NULL)
        close_block(&w->b->closer);
    if (w->ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
        w->ref = LUA_NOREF;
    }
}

/* core.signal_watch(fname, arg, target, name...): the watch, on. target is a channel or
 * a function; fname names the caller in errors, where the first name is argument #arg. */
static int l_signal_watch(lua_State *L)
{
    conc_sched_t *s = conc_sched_get(L);
    const char *fname = luaL_checkstring(L, 1);
    int arg = (int)luaL_checkinteger(L, 2);
    int n, i, nums[NSIGNALS];
    lua_remove(L, 2);
    n = lua_gettop(L) - 2;
    conc_sigwatch_t *w;
    sig_block_t *b;
    if (n < 1)
        return conc_error(L, "%s: no signal named (at least one expected)", fname);
    if (n > NSIGNALS)
        return conc_error(L, "%s: too many signals (at most %d)", fname, NSIGNALS);
    if (!lua_isfunction(L, 2) && conc_checkud(L, 2, CONC_UP_CHAN_MT, sizeof(conc_chan_t)) == NULL)
        return conc_error(L, "%s: the target must be a channel or a function", fname);
    for (i = 0; i < n; i++) {
        if (lua_type(L, i + 3) != LUA_TSTRING)
            return conc_argerror(L, fname, arg + i, i + 3, "signal name");
        nums[i] = signal_number(lua_tostring(L, i + 3));
        if (nums[i] == 0)
            return conc_error(L, "%s: bad argument #%d (unknown signal '%s'; one of SIGHUP, SIGINT, SIGQUIT, "
                                 "SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGCHLD, SIGCONT, SIGTSTP, "
                                 "SIGTTIN, SIGTTOU, SIGWINCH expected)",
                              fname, arg + i, lua_tostring(L, i + 3));
    }
    w = (conc_sigwatch_t *)conc_compat_newud(L, sizeof *w, 1);
    w->tag = CONC_TAG(CONC_UP_SIGWATCH_MT);
    w->b = NULL;
    w->ref = LUA_NOREF;
    w->id = ++s->next_obj_id;
    lua_pushvalue(L, lua_upvalueindex(CONC_UP_SIGWATCH_MT));
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    conc_compat_setuv(L, -2, 1);
    b = calloc(1, sizeof *b + (size_t)(n - 1) * sizeof(uv_signal_t));
    if (b == NULL)
        return conc_error(L, "%s: out of memory", fname);
    b->closer.close = close_block;
    b->s = s;
    b->owner = w;
    for (i = 0; i < n; i++) {
        int rc = uv_signal_init(s->loop, &b->h[i]);
        if (rc == 0) {
            b->h[i].data = b;
            b->n++;
            b->open++;
            rc = uv_signal_start(&b->h[i], on_signal, nums[i]);
        }
        if (rc != 0) {
            if (b->open == 0)
                free(b);
            else
                close_block(&b->closer);
            return conc_error(L, "%s: cannot watch %s (%s)", fname, lua_tostring(L, i + 3), uv_strerror(rc));
        }
    }
    w->b = b;
    lua_pushvalue(L, -1);
    w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* w:stop(): stops watching; true. Stopping again does nothing. */
static int w_stop(lua_State *L)
{
    conc_sigwatch_t *w = checkwatch(L, "stop");
    stop_watch(L, w);
    lua_pushboolean(L, 1);
    return 1;
}

static int w_gc(lua_State *L)
{
    conc_sigwatch_t *w = (conc_sigwatch_t *)lua_touserdata(L, 1);
    if (w->b != NULL)
        close_block(&w->b->closer); /* only reached once stopped, or as the state closes */
    return 0;
}

static int w_tostring(lua_State *L)
{
    conc_sigwatch_t *w = checkwatch(L, "sigwatch:__tostring");
    lua_pushfstring(L, "sigwatch#%d%s", (int)w->id, w->b == NULL ? " (stopped)" : "");
    return 1;
}

const luaL_Reg conc_signal_funcs[] = {
    {"signal_watch", l_signal_watch},
    {NULL, NULL}
};

const luaL_Reg conc_sigwatch_methods[] = {
    {"stop", w_stop},
    {NULL, NULL}
};

const luaL_Reg conc_sigwatch_metamethods[] = {
    {"__gc", w_gc},
    {"__tostring", w_tostring},
    {NULL, NULL}
};
