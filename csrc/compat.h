/*
 * compat.h: the differences between Lua 5.1, 5.3, 5.4 and LuaJIT 2.1 that conc meets.
 *
 * Helpers are prefixed conc_compat_ and never define lua_* or luaL_* names (LuaJIT 2.1
 * declares some 5.2 functions itself; defining them again breaks the build).
 *
 * User values: 5.4 has several per userdata; 5.1, 5.3 and LuaJIT have one (a table on 5.1
 * and LuaJIT), so there a table holds the numbered slots.
 */
#ifndef CONC_COMPAT_H
#define CONC_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifdef LUA_JITLIBNAME
#define CONC_LUAJIT 1
#else
#define CONC_LUAJIT 0
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* PUC Lua 5.1 cannot yield across pcall, metamethods or for-in iterators. */
#define CONC_PUC51 (LUA_VERSION_NUM == 501 && !CONC_LUAJIT)

/* lua_yieldk (a continuation after resume) exists on 5.2+, not on 5.1 or LuaJIT. */
#define CONC_HAVE_YIELDK (LUA_VERSION_NUM >= 502)

#if LUA_VERSION_NUM >= 504
#define conc_compat_newud(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
#define conc_compat_getuv(L, idx, n) ((void)lua_getiuservalue((L), (idx), (n)))
#define conc_compat_setuv(L, idx, n) ((void)lua_setiuservalue((L), (idx), (n)))
#else
static inline void *conc_compat_newud(lua_State *L, size_t size, int nuv)
{
    void *p = lua_newuserdata(L, size);
    if (nuv == 0)
        return p;
    lua_createtable(L, nuv, 0);
#if LUA_VERSION_NUM >= 502
    lua_setuservalue(L, -2);
#else
    lua_setfenv(L, -2);
#endif
    return p;
}

static inline void conc_compat_getuv(lua_State *L, int idx, int n)
{
#if LUA_VERSION_NUM >= 502
    lua_getuservalue(L, idx);
#else
    lua_getfenv(L, idx);
#endif
    lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
}

/* Pops the value on top into slot n of the userdata at idx. */
static inline void conc_compat_setuv(lua_State *L, int idx, int n)
{
    idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
#if LUA_VERSION_NUM >= 502
    lua_getuservalue(L, idx);
#else
    lua_getfenv(L, idx);
#endif
    lua_insert(L, -2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
}
#endif

/* lua_resume: three signatures. Returns the status; *nres is the count of values on top. */
static inline int conc_compat_resume(lua_State *co, lua_State *from, int nargs, int *nres)
{
#if LUA_VERSION_NUM >= 504
    return lua_resume(co, from, nargs, nres);
#elif LUA_VERSION_NUM >= 502
    int st = lua_resume(co, from, nargs);
    *nres = lua_gettop(co);
    return st;
#else
    int st;
    (void)from;
    st = lua_resume(co, nargs);
    *nres = lua_gettop(co);
    return st;
#endif
}

/* Whether a C function running on L may yield (unknown on PUC 5.1: assume yes, and let
 * lua_yield raise its own error; conc commits a park only after the yield succeeded). */
static inline int conc_compat_isyieldable(lua_State *L)
{
#if LUA_VERSION_NUM >= 503 || CONC_LUAJIT
    return lua_isyieldable(L);
#else
    (void)L;
    return 1;
#endif
}

#if LUA_VERSION_NUM < 502 && !CONC_LUAJIT
static inline void conc_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    int i;
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name != NULL; l++) {
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#else
#define conc_compat_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#endif

#if LUA_VERSION_NUM >= 502
#define conc_compat_rawlen(L, i) lua_rawlen((L), (i))
#else
#define conc_compat_rawlen(L, i) lua_objlen((L), (i))
#endif

#endif
