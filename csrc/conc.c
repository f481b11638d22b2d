/*
 * conc.c: luaopen_conc_core, the only exported symbol, and the helpers every binding uses
 * to check arguments and raise conc: errors.
 *
 * luaopen_conc_core makes the scheduler of this Lua state and the metatables, then
 * registers every function and method with the same upvalues (enum conc_upvalue).
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include "conc.h"

int conc_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    lua_pushliteral(L, "conc: ");
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

const char *conc_typename(lua_State *L, int idx)
{
    const char *name = luaL_typename(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, idx);
        if (n != n)
            return "nan";
    }
    if (luaL_getmetafield(L, idx, "__name")) {
        if (lua_type(L, -1) == LUA_TSTRING)
            name = lua_tostring(L, -1); /* kept alive by the metatable */
        lua_pop(L, 1);
    }
    return name;
}

/* Raises a bad-argument error; arg counts from the caller's view (0 is self). */
int conc_argerror(lua_State *L, const char *fname, int arg, int idx, const char *expected)
{
    if (arg == 0)
        return conc_error(L, "%s: bad self (%s expected, got %s)", fname, expected, conc_typename(L, idx));
    return conc_error(L, "%s: bad argument #%d (%s expected, got %s)", fname, arg, expected,
                      conc_typename(L, idx));
}

/* Raises when more than max arguments (after self, if any) were passed. */
void conc_check_nargs(lua_State *L, const char *fname, int max, int self)
{
    int n = lua_gettop(L) - self;
    if (n > max)
        conc_error(L, "%s: too many arguments (at most %d expected, got %d)", fname, max, n);
}

const char conc_type_tags[CONC_NUP + 1] = {0};

/* The userdata at idx if it is a conc object of the type whose metatable is at upvalue
 * mt_upvalue (and whose struct has that size), else NULL. It checks the block's size, then
 * its first word, the type's tag: the size check keeps the read in bounds, and only conc's
 * C code writes a tag (Lua code can swap a userdata's metatable with debug.setmetatable,
 * but not its contents). Cheaper than comparing metatables, on every channel operation. */
void *conc_checkud(lua_State *L, int idx, int mt_upvalue, size_t size)
{
    void *p = lua_touserdata(L, idx);
    if (p == NULL || conc_compat_rawlen(L, idx) != size || *(const void **)p != CONC_TAG(mt_upvalue))
        return NULL; /* a light userdata has length 0 */
    return p;
}

double conc_checkduration(lua_State *L, int idx, const char *fname, int arg)
{
    lua_Number d;
    if (lua_type(L, idx) != LUA_TNUMBER)
        conc_argerror(L, fname, arg, idx, "number");
    d = lua_tonumber(L, idx);
    if (d != d)
        conc_argerror(L, fname, arg, idx, "duration in seconds");
    return (double)d;
}

/* Pushes the Lua function that called the running C function (nil when none) and sets
 * *line to the line of that call: where a task or channel was made, resolved lazily. */
void conc_push_site(lua_State *L, int *line)
{
    lua_Debug ar;
    *line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "fl", &ar))
        *line = ar.currentline;
    else
        lua_pushnil(L);
}

/* sysinfo(): pid, host name and the wall-clock time in seconds since the epoch (with
 * microseconds), for the records of conc.errors. */
static int l_sysinfo(lua_State *L)
{
    char host[256];
    size_t len = sizeof host;
    uv_timeval64_t tv;
    conc_check_nargs(L, "sysinfo", 0, 0);
    lua_pushinteger(L, (lua_Integer)uv_os_getpid());
    if (uv_os_gethostname(host, &len) == 0)
        lua_pushlstring(L, host, len);
    else
        lua_pushliteral(L, "unknown");
    if (uv_gettimeofday(&tv) == 0)
        lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
    else
        lua_pushnumber(L, 0);
    return 3;
}

/* The closure of with_stack: calls its upvalue with the traceback of its caller first. */
static int call_with_stack(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
#if CONC_PUC51
    /* no luaL_traceback: debug.traceback at level 2, past itself and this function */
    lua_getglobal(L, "debug");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    } else {
        lua_getfield(L, -1, "traceback");
        lua_remove(L, -2);
        lua_pushliteral(L, "");
        lua_pushinteger(L, 2);
        lua_call(L, 2, 1);
    }
#else
    luaL_traceback(L, L, NULL, 1);
#endif
    lua_insert(L, 1);
    lua_insert(L, 1);
    lua_call(L, n + 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* with_stack(fn): a C function g such that g(...) returns fn(stack, ...), where stack is the
 * traceback from g's caller up. It is C so that `return g(...)`, a tail call, still finds
 * the caller on the stack: PUC Lua drops a tail-calling frame for a Lua callee, not for a C
 * one (LuaJIT drops it for both). errors.new and errors.wrap are made this way. */
static int l_with_stack(lua_State *L)
{
    conc_check_nargs(L, "with_stack", 1, 0);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushcclosure(L, call_with_stack, 1);
    return 1;
}

static const luaL_Reg conc_os_funcs[] = {
    {"sysinfo", l_sysinfo},
    {"with_stack", l_with_stack},
    {NULL, NULL}
};

static int sched_gc(lua_State *L)
{
    conc_sched_close((conc_sched_t *)lua_touserdata(L, 1), L);
    return 0;
}

/* Pushes an empty metatable named `name`; fill_type adds its functions once every
 * metatable exists (each function has them all as upvalues). */
static void new_type(lua_State *L, const char *name)
{
    lua_newtable(L);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
}

static void add_funcs(lua_State *L, const luaL_Reg *funcs)
{
    int i;
    for (i = 1; i <= CONC_NUP; i++)
        lua_pushvalue(L, i);
    conc_compat_setfuncs(L, funcs, CONC_NUP);
}

/* Fills the metatable at stack index mt (its upvalue number too) with methods and metamethods. */
static void fill_type(lua_State *L, int mt, const luaL_Reg *methods, const luaL_Reg *metamethods)
{
    lua_pushvalue(L, mt);
    if (methods != NULL) {
        lua_newtable(L);
        add_funcs(L, methods);
        lua_setfield(L, -2, "__index");
    }
    if (metamethods != NULL)
        add_funcs(L, metamethods);
    lua_pop(L, 1);
}

static int default_tostring(lua_State *L)
{
    lua_pushliteral(L, "conc.default");
    return 1;
}

__attribute__((visibility("default"))) int luaopen_conc_core(lua_State *L);

int luaopen_conc_core(lua_State *L)
{
    conc_sched_t *s;
    lua_settop(L, 0);
    /* the scheduler and the metatables stay on the stack, and fill_type pushes a copy of
     * each as upvalues: more than the LUA_MINSTACK slots a C function is given */
    luaL_checkstack(L, 2 * CONC_NUP + 8, "conc");
    /* 1: the scheduler, safe to collect before conc_sched_init has run */
    s = (conc_sched_t *)conc_compat_newud(L, sizeof *s, CONC_SCHED_NUV);
    memset(s, 0, sizeof *s);
    lua_newtable(L);
    lua_pushcfunction(L, sched_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, CONC_SCHED_T);
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, 1);
    conc_sched_init(s, L);
    s->main.co = s->main.exec = lua_newthread(L);
    conc_compat_setuv(L, 1, CONC_SCHED_UV_HOLDER);
    lua_newtable(L);
    conc_compat_setuv(L, 1, CONC_SCHED_UV_HOOKS);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    conc_compat_setuv(L, 1, CONC_SCHED_UV_TIMERS);
    lua_newtable(L);
    conc_compat_setuv(L, 1, CONC_SCHED_UV_POOL);
    /* the metatables, in the order of enum conc_upvalue, then conc.default */
    new_type(L, CONC_CHAN_T);
    new_type(L, CONC_TASK_T);
    new_type(L, CONC_TIMER_T);
    new_type(L, CONC_SENDCASE_T);
    new_type(L, CONC_CTX_T);
    new_type(L, CONC_WAITGROUP_T);
    new_type(L, CONC_SEMAPHORE_T);
    new_type(L, CONC_MUTEX_T);
    new_type(L, CONC_LIMITER_T);
    new_type(L, CONC_RESERVATION_T);
    new_type(L, CONC_CONN_T);
    new_type(L, CONC_LISTENER_T);
    new_type(L, CONC_SIGWATCH_T);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, default_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "conc.default");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    fill_type(L, CONC_UP_CHAN_MT, conc_chan_methods, conc_chan_metamethods);
    fill_type(L, CONC_UP_TASK_MT, conc_task_methods, conc_task_metamethods);
    fill_type(L, CONC_UP_TIMER_MT, conc_timer_methods, conc_timer_metamethods);
    fill_type(L, CONC_UP_CTX_MT, conc_ctx_methods, conc_ctx_metamethods);
    fill_type(L, CONC_UP_WAITGROUP_MT, conc_waitgroup_methods, conc_waitgroup_metamethods);
    fill_type(L, CONC_UP_SEMAPHORE_MT, conc_semaphore_methods, conc_semaphore_metamethods);
    fill_type(L, CONC_UP_MUTEX_MT, conc_mutex_methods, conc_mutex_metamethods);
    fill_type(L, CONC_UP_LIMITER_MT, conc_limiter_methods, conc_limiter_metamethods);
    fill_type(L, CONC_UP_RESERVATION_MT, conc_reservation_methods, conc_reservation_metamethods);
    fill_type(L, CONC_UP_CONN_MT, conc_conn_methods, conc_conn_metamethods);
    fill_type(L, CONC_UP_LISTENER_MT, conc_listener_methods, conc_listener_metamethods);
    fill_type(L, CONC_UP_SIGWATCH_MT, conc_sigwatch_methods, conc_sigwatch_metamethods);
    /* the module */
    lua_newtable(L);
    add_funcs(L, conc_sched_funcs);
    add_funcs(L, conc_task_funcs);
    add_funcs(L, conc_chan_funcs);
    add_funcs(L, conc_select_funcs);
    add_funcs(L, conc_timer_funcs);
    add_funcs(L, conc_ctx_funcs);
    add_funcs(L, conc_sync_funcs);
    add_funcs(L, conc_os_funcs);
    add_funcs(L, conc_rate_funcs);
    add_funcs(L, conc_net_funcs);
    add_funcs(L, conc_signal_funcs);
    lua_pushvalue(L, CONC_UP_DEFAULT);
    lua_setfield(L, -2, "default");
    lua_pushboolean(L, CONC_HAVE_YIELDK);
    lua_setfield(L, -2, "has_yieldk");
    lua_pushboolean(L, CONC_PUC51);
    lua_setfield(L, -2, "puc51");
    return 1;
}
