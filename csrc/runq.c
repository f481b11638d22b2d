/*
 * runq.c: the run queue (see runq.h). Owns the ring array, never the tasks.
 */
#include <stdlib.h>
#include "runq.h"

void conc_runq_init(conc_runq_t *q)
{
    q->items = NULL;
    q->head = q->len = q->cap = 0;
}

void conc_runq_free(conc_runq_t *q)
{
    free(q->items);
    conc_runq_init(q);
}

int conc_runq_reserve(conc_runq_t *q, size_t n)
{
    size_t cap, i;
    void **items;
    if (n <= q->cap)
        return 0;
    cap = q->cap ? q->cap : 256;
    while (cap < n)
        cap *= 2;
    items = malloc(cap * sizeof *items);
    if (items == NULL)
        return -1;
    for (i = 0; i < q->len; i++)
        items[i] = q->items[(q->head + i) % q->cap];
    free(q->items);
    q->items = items;
    q->head = 0;
    q->cap = cap;
    return 0;
}

void conc_runq_push(conc_runq_t *q, void *p)
{
    q->items[(q->head + q->len++) % q->cap] = p;
}

void *conc_runq_pop(conc_runq_t *q)
{
    void *p = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return p;
}

void conc_runq_swap_head(conc_runq_t *q, size_t k)
{
    size_t j = (q->head + k) % q->cap;
    void *tmp = q->items[q->head];
    q->items[q->head] = q->items[j];
    q->items[j] = tmp;
}

void conc_runq_clear(conc_runq_t *q)
{
    q->head = q->len = 0;
}
