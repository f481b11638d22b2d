/*
 * runq.h: the run queue, a growable FIFO ring of task pointers.
 *
 * Invariant: a task is in the run queue at most once, exactly while its status is ready.
 * conc_runq_swap_head lets a debug build run tasks in a random order (so that specs which
 * rely on an unpromised order fail) without changing the queue's shape.
 */
#ifndef CONC_RUNQ_H
#define CONC_RUNQ_H

#include <stddef.h>

typedef struct conc_runq {
    void **items;
    size_t head, len, cap;
} conc_runq_t;

void conc_runq_init(conc_runq_t *q);
void conc_runq_free(conc_runq_t *q);
/* Makes room for n items in all. Returns 0, or -1 when out of memory. */
int conc_runq_reserve(conc_runq_t *q, size_t n);
/* Appends p. Requires room (conc_runq_reserve), so it never fails. */
void conc_runq_push(conc_runq_t *q, void *p);
/* Removes and returns the oldest item. Requires len > 0. */
void *conc_runq_pop(conc_runq_t *q);
/* Swaps the head with the item k places behind it (k < len). */
void conc_runq_swap_head(conc_runq_t *q, size_t k);
/* Removes every item. */
void conc_runq_clear(conc_runq_t *q);

#endif
