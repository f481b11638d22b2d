/*
 * conc.h: the internal API of the C core, and every type name.
 *
 * One scheduler object (conc_sched_t) per Lua state owns all runtime state: the run queue,
 * the timer heap, the libuv loop, the list of live tasks and the counters. There are no C
 * globals other than constants. Every function of conc.core receives the scheduler and the
 * metatables as upvalues (see enum conc_upvalue), so nothing is looked up in the registry;
 * a type is checked by the size and tag of its block (conc_checkud).
 *
 * Blocking: a blocking call first tries its fast path. If it must wait, it asks for the task
 * that will park (conc_sched_parker), describes the wait in that task's waiters, and returns
 * conc_sched_park(), which yields the task (the scheduler links the waiters once the yield
 * has happened) or, at the top level, drives the scheduler until the wait is over. A waker
 * pushes the results onto the parked task's stack and calls conc_sched_wake.
 */
#ifndef CONC_H
#define CONC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "compat.h"
#include "heap.h"
#include "ring.h"
#include "runq.h"
#include "waitq.h"

#define CONC_SCHED_T "conc.sched"
#define CONC_CHAN_T "conc.chan"
#define CONC_TASK_T "conc.task"
#define CONC_TIMER_T "conc.timer"
#define CONC_SENDCASE_T "conc.sendcase"
#define CONC_CTX_T "conc.ctx"
#define CONC_WAITGROUP_T "conc.waitgroup"
#define CONC_SEMAPHORE_T "conc.semaphore"
#define CONC_MUTEX_T "conc.mutex"
#define CONC_LIMITER_T "conc.rate.limiter"
#define CONC_RESERVATION_T "conc.rate.reservation"
#define CONC_CONN_T "conc.net.conn"
#define CONC_LISTENER_T "conc.net.listener"
#define CONC_SIGWATCH_T "conc.sigwatch"

/* Upvalues of every conc.core function and method. */
enum conc_upvalue {
    CONC_UP_SCHED = 1,
    CONC_UP_CHAN_MT,
    CONC_UP_TASK_MT,
    CONC_UP_TIMER_MT,
    CONC_UP_SENDCASE_MT,
    CONC_UP_CTX_MT,
    CONC_UP_WAITGROUP_MT,
    CONC_UP_SEMAPHORE_MT,
    CONC_UP_MUTEX_MT,
    CONC_UP_LIMITER_MT,
    CONC_UP_RESERVATION_MT,
    CONC_UP_CONN_MT,
    CONC_UP_LISTENER_MT,
    CONC_UP_SIGWATCH_MT,
    CONC_UP_DEFAULT,
    CONC_NUP = CONC_UP_DEFAULT
};

/* User value slots of the scheduler, tasks and channels. */
enum {
    CONC_SCHED_UV_HOLDER = 1, /* the top level's holder thread */
    CONC_SCHED_UV_HOOKS,      /* functions and values set by init.lua (core.set_hooks) */
    CONC_SCHED_UV_TIMERS,     /* weak: light userdata of a heap node's owner -> its object */
    CONC_SCHED_UV_POOL,       /* idle coroutines */
    CONC_SCHED_UV_BACKGROUND, /* conc.background(), made on first use */
    CONC_SCHED_UV_CANCELED,   /* hooks.canceled and hooks.deadline_exceeded, the errors of */
    CONC_SCHED_UV_DEADLINE,   /* a ctx that ended, kept here to be found fast */
    CONC_SCHED_NUV = 7
};
enum { CONC_TASK_UV_CO = 1, CONC_TASK_UV_SITE, CONC_TASK_UV_NAME, CONC_TASK_NUV = 3 };
/* OWNER: the ctx whose done channel this is, kept alive by it */
enum { CONC_CHAN_UV_BUF = 1, CONC_CHAN_UV_SITE, CONC_CHAN_UV_OWNER, CONC_CHAN_NUV = 3 };

/* What owns a heap node. */
enum { CONC_HEAP_SLEEP = 1, CONC_HEAP_TIMER = 2, CONC_HEAP_CTX = 3 };

/* Special waiter case numbers: the iterator of ch:iter(), and the wait on a ctx's done. */
#define CONC_ITER_CASE (-1)
#define CONC_CTX_CASE (-2)

typedef enum {
    CONC_TASK_READY,
    CONC_TASK_RUNNING,
    CONC_TASK_BLOCKED,
    CONC_TASK_DONE,
    CONC_TASK_FAILED
} conc_status_t;

/* Why a task is blocked; conc_reason_names gives the words dump and deadlock print. */
typedef enum {
    CONC_WAIT_NONE,
    CONC_WAIT_YIELD,
    CONC_WAIT_RECV,
    CONC_WAIT_SEND,
    CONC_WAIT_SELECT,
    CONC_WAIT_SLEEP,
    CONC_WAIT_TASK,
    CONC_WAIT_WAITGROUP,
    CONC_WAIT_ACQUIRE,
    CONC_WAIT_LOCK,
    CONC_WAIT_ACCEPT,
    CONC_WAIT_CONNECT,
    CONC_WAIT_READ,
    CONC_WAIT_WRITE
} conc_reason_t;

extern const char *const conc_reason_names[];
extern const char *const conc_status_names[];

typedef struct conc_sched conc_sched_t;

/* The first member of every malloc'ed block that owns libuv handles (net.c, signal.c):
 * when the scheduler closes, it walks the loop and closes what is left through it. */
typedef struct conc_closer {
    void (*close)(struct conc_closer *self);
} conc_closer_t;

typedef struct conc_task {
    const void *tag;      /* CONC_TAG(CONC_UP_TASK_MT), see conc_checkud */
    lua_State *co;        /* the task's coroutine (NULL before it starts and once it is
                           * recycled); for the top level, a holder thread */
    lua_State *exec;      /* the coroutine allowed to park: co, or a conc.pcall one (5.1) */
    int ref;              /* registry ref to the task userdata while live, else LUA_NOREF */
    unsigned id;
    unsigned char status; /* a conc_status_t */
    unsigned char reason; /* a conc_reason_t, valid while parking or blocked */
    unsigned char timed;  /* the park includes `timer` */
    int nargs;            /* values on co to pass at the next resume; before the start,
                           * the count of the function and its arguments */
    int nres;             /* results on top of co once done; a failed task's error is the
                           * one value on top of its co */
    int nwait;            /* waiters in use */
    int wcap;             /* capacity of waiters */
    conc_waiter_t *waiters; /* &w1 or a malloc'ed array (select) */
    conc_waiter_t w1;
    conc_heap_node_t timer; /* a sleep's deadline */
    conc_waitq_t joiners;   /* tasks blocked in wait() on this one */
    struct conc_task *live_prev, *live_next; /* the scheduler's list of live tasks */
    int site_line;          /* line of the conc.go call (function in CONC_TASK_UV_SITE) */
} conc_task_t;

typedef struct conc_chan {
    const void *tag;        /* CONC_TAG(CONC_UP_CHAN_MT) */
    conc_waitq_t recvq, sendq;
    conc_ring_t ring;
    unsigned id;
    int closed;
    int recv_only;          /* timer channels: only the runtime sends or closes */
    int site_line;
    conc_heap_node_t tnode; /* when a timer feeds this channel */
    double period;          /* a ticker's period; 0 for a one-shot timer */
} conc_chan_t;

typedef struct conc_ctx {
    const void *tag;        /* CONC_TAG(CONC_UP_CTX_MT) */
    struct conc_ctx *src;   /* the ctx whose cancellation this one reports (itself for a
                             * with_cancel/deadline/timeout ctx), or NULL: never done */
    conc_chan_t *donech;    /* a source's done channel, once made (see ctx.c) */
    unsigned id;
    unsigned char kind;     /* see ctx.c */
    unsigned char done;     /* a source that was cancelled (err and cause are set) */
    double deadline;        /* HUGE_VAL when none */
    conc_heap_node_t tnode; /* the deadline, when this ctx set one */
} conc_ctx_t;

static inline int conc_ctx_is_done(const conc_ctx_t *x)
{
    return x->src != NULL && x->src->done;
}

struct conc_sched {
    uv_loop_t *loop;
    uv_timer_t *wake;      /* armed for the earliest deadline while the loop waits */
    lua_State *L;          /* the thread driving the scheduler, while driving */
    conc_task_t *current;  /* the task running now, or NULL */
    conc_task_t main;      /* the top level as a pseudo-task */
    conc_task_t *live;     /* live tasks: ready, running or blocked */
    conc_runq_t runq;
    conc_heap_t timers;
    int driving;           /* the scheduler loop runs (uv_run must not be re-entered) */
    int virtual_time;      /* time advances only when every task waits (testing) */
    double vnow;
    uint64_t rng;
    unsigned long long switches, chan_ops;
    size_t ntasks;
    unsigned next_task_id, next_obj_id;
    int npool;             /* idle coroutines in CONC_SCHED_UV_POOL */
    struct conc_case *cases; /* select's scratch array */
    size_t ncases_cap;
};

#define conc_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Type tags: the first field of every conc userdata struct is the address of its type's
 * entry in this constant array (see conc_checkud). */
extern const char conc_type_tags[CONC_NUP + 1];
#define CONC_TAG(mt_upvalue) ((const void *)&conc_type_tags[(mt_upvalue)])

/* errors (conc.c) */
int conc_error(lua_State *L, const char *fmt, ...);
int conc_argerror(lua_State *L, const char *fname, int arg, int idx, const char *expected);
void conc_check_nargs(lua_State *L, const char *fname, int max, int self);
const char *conc_typename(lua_State *L, int idx);
void *conc_checkud(lua_State *L, int idx, int mt_upvalue, size_t size);
void conc_push_site(lua_State *L, int *line);
double conc_checkduration(lua_State *L, int idx, const char *fname, int arg);
uint64_t conc_rand(conc_sched_t *s);

static inline conc_sched_t *conc_sched_get(lua_State *L)
{
    return (conc_sched_t *)lua_touserdata(L, lua_upvalueindex(CONC_UP_SCHED));
}

/* sched.c */
void conc_sched_init(conc_sched_t *s, lua_State *L);
void conc_sched_close(conc_sched_t *s, lua_State *L);
double conc_sched_now(conc_sched_t *s);
conc_task_t *conc_sched_parker(lua_State *L, conc_sched_t *s, const char *fname);
conc_waiter_t *conc_task_waiters(lua_State *L, conc_task_t *t, int n);
/* Describes a wait on one queue (a channel's sendq or recvq, a task's joiners): the object
 * is at stack index 1, a sender's value at valslot (0: none); caseno as in conc_waiter_t. */
void conc_task_wait_on(lua_State *L, conc_task_t *t, conc_waitq_t *q, int valslot, int caseno);
int conc_sched_park(lua_State *L, conc_sched_t *s, conc_task_t *t, conc_reason_t reason);
void conc_sched_wake(conc_sched_t *s, conc_task_t *t, int nres);
void conc_sched_push_raise(lua_State *co, const char *msg);
int conc_sched_finish_raise(lua_State *L, int base);
void conc_sched_reserve(lua_State *L, conc_sched_t *s);
void conc_sched_spawned(conc_sched_t *s, conc_task_t *t);
void conc_sched_abandon_all(conc_sched_t *s, lua_State *L);
int conc_sched_step(lua_State *L, conc_sched_t *s, double timeout);
void conc_push_task(lua_State *L, conc_task_t *t);
void conc_push_hook(lua_State *L, const char *name);
void conc_sched_track(lua_State *L, const void *owner, int idx);
int conc_sched_find(lua_State *L, const void *owner);
int conc_task_outcome(lua_State *L, conc_task_t *t, int tidx, lua_State *to);
extern const luaL_Reg conc_sched_funcs[];

/* task.c */
conc_task_t *conc_task_spawn(lua_State *L, conc_sched_t *s, int first, int n);
extern const luaL_Reg conc_task_funcs[];
extern const luaL_Reg conc_task_methods[];
extern const luaL_Reg conc_task_metamethods[];

/* chan.c */
enum { CONC_RECV_EMPTY, CONC_RECV_VALUE, CONC_RECV_CLOSED };
conc_chan_t *conc_chan_new(lua_State *L, conc_sched_t *s, lua_Integer cap);
int conc_chan_trysend(lua_State *L, conc_sched_t *s, conc_chan_t *c, int cidx, int vidx);
int conc_chan_tryrecv(lua_State *L, conc_sched_t *s, conc_chan_t *c, int cidx);
void conc_chan_discard(lua_State *L, conc_chan_t *c, int cidx);
void conc_chan_close(lua_State *L, conc_sched_t *s, conc_chan_t *c);
extern const luaL_Reg conc_chan_funcs[];
extern const luaL_Reg conc_chan_methods[];
extern const luaL_Reg conc_chan_metamethods[];

/* ctx.c */
conc_ctx_t *conc_ctx_opt(lua_State *L, int idx, const char *fname, int arg);
int conc_ctx_failed(lua_State *L, conc_ctx_t *x, int is_recv);
void conc_task_wait_ctx(lua_State *L, conc_task_t *t, conc_ctx_t *x, int ctxslot);
int conc_ctx_push_failure(lua_State *L, conc_task_t *t, int ctxslot);
void conc_ctx_fire(conc_sched_t *s, lua_State *L, conc_ctx_t *x);
extern const luaL_Reg conc_ctx_funcs[];
extern const luaL_Reg conc_ctx_methods[];
extern const luaL_Reg conc_ctx_metamethods[];

/* sync.c */
extern const luaL_Reg conc_sync_funcs[];
extern const luaL_Reg conc_waitgroup_methods[];
extern const luaL_Reg conc_waitgroup_metamethods[];
extern const luaL_Reg conc_semaphore_methods[];
extern const luaL_Reg conc_semaphore_metamethods[];
extern const luaL_Reg conc_mutex_methods[];
extern const luaL_Reg conc_mutex_metamethods[];

/* rate.c */
extern const luaL_Reg conc_rate_funcs[];
extern const luaL_Reg conc_limiter_methods[];
extern const luaL_Reg conc_limiter_metamethods[];
extern const luaL_Reg conc_reservation_methods[];
extern const luaL_Reg conc_reservation_metamethods[];

/* net.c */
extern const luaL_Reg conc_net_funcs[];
extern const luaL_Reg conc_conn_methods[];
extern const luaL_Reg conc_conn_metamethods[];
extern const luaL_Reg conc_listener_methods[];
extern const luaL_Reg conc_listener_metamethods[];

/* signal.c */
extern const luaL_Reg conc_signal_funcs[];
extern const luaL_Reg conc_sigwatch_methods[];
extern const luaL_Reg conc_sigwatch_metamethods[];

/* select.c */
extern const luaL_Reg conc_select_funcs[];

/* timer.c */
void conc_timer_fire(conc_sched_t *s, lua_State *L, conc_chan_t *c, double now);
extern const luaL_Reg conc_timer_funcs[];
extern const luaL_Reg conc_timer_methods[];
extern const luaL_Reg conc_timer_metamethods[];

#ifdef CONC_DEBUG
#include <assert.h>
#define CONC_ASSERT(x) assert(x)
#else
#define CONC_ASSERT(x) ((void)0)
#endif

#endif
