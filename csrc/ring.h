/*
 * ring.h: index arithmetic of a fixed-capacity FIFO ring (a channel's buffer).
 *
 * Only positions live here; the values themselves sit in a Lua table owned by the channel,
 * at index pos + 1. Invariant: 0 <= len <= cap, 0 <= head < cap when cap > 0. A slot is
 * counted by len, never by looking at the value, so nil and false are ordinary values.
 */
#ifndef CONC_RING_H
#define CONC_RING_H

#include <stddef.h>

typedef struct conc_ring {
    size_t head, len, cap;
} conc_ring_t;

static inline void conc_ring_init(conc_ring_t *r, size_t cap)
{
    r->head = r->len = 0;
    r->cap = cap;
}

/* Position where the next value goes; the caller stores it there. Requires len < cap. */
static inline size_t conc_ring_push(conc_ring_t *r)
{
    size_t pos = (r->head + r->len) % r->cap;
    r->len++;
    return pos;
}

/* Position of the oldest value, which the caller takes. Requires len > 0. */
static inline size_t conc_ring_pop(conc_ring_t *r)
{
    size_t pos = r->head;
    r->head = (r->head + 1) % r->cap;
    r->len--;
    return pos;
}

#endif
