/*
 * waitq.h: FIFO queues of waiters, as in Go's runtime (sudog lists on hchan).
 *
 * A waiter is one parked operation of one task on one object: a plain send or receive, or
 * one case of a select. Waiters are intrusive (they live in the task) so queueing never
 * allocates. Invariants: a waiter is on at most one queue; `q` is that queue or NULL;
 * removal is O(1) from anywhere, so a select whose case fired unlinks its other waiters at
 * once and a queue never holds a stale waiter.
 */
#ifndef CONC_WAITQ_H
#define CONC_WAITQ_H

#include <stddef.h>

typedef struct conc_waitq conc_waitq_t;

typedef struct conc_waiter {
    struct conc_waiter *prev, *next;
    conc_waitq_t *q;   /* the queue this waiter is on, or NULL */
    conc_waitq_t *home; /* the queue it goes on when its task's park is committed */
    void *owner;       /* the parked task */
    int objslot;       /* stack index of the object waited on, on the parked task's stack */
    int valslot;       /* stack index of the value a parked sender offers */
    int caseno;        /* 0 for a plain operation, else the select case's position */
} conc_waiter_t;

struct conc_waitq {
    conc_waiter_t *head, *tail;
    /* Called when a waiter leaves this queue because its task was woken by something else
     * (its ctx ended): a semaphore then serves the waiters behind it. NULL on most queues. */
    void (*on_leave)(struct conc_waitq *q, void *sched);
};

static inline void conc_waitq_init(conc_waitq_t *q)
{
    q->head = q->tail = NULL;
    q->on_leave = NULL;
}

static inline void conc_waitq_push(conc_waitq_t *q, conc_waiter_t *w)
{
    w->q = q;
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
}

static inline void conc_waitq_remove(conc_waiter_t *w)
{
    conc_waitq_t *q = w->q;
    if (q == NULL)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    w->q = NULL;
}

/* Removes and returns the oldest waiter, or NULL. */
static inline conc_waiter_t *conc_waitq_pop(conc_waitq_t *q)
{
    conc_waiter_t *w = q->head;
    if (w)
        conc_waitq_remove(w);
    return w;
}

#endif
