/*
 * heap.h: the timer heap, a binary min-heap ordered by (deadline, sequence).
 *
 * One heap per scheduler holds every pending sleep, timer and ticker, so 100k sleepers cost
 * one libuv timer. Equal deadlines fire in the order they were added (the sequence breaks
 * ties). Nodes are intrusive; `index` is the node's position, or CONC_HEAP_NONE when the node
 * is not in a heap, so removal from the middle is O(log n).
 */
#ifndef CONC_HEAP_H
#define CONC_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define CONC_HEAP_NONE ((size_t)-1)

typedef struct conc_heap_node {
    double deadline;
    uint64_t seq;
    size_t index;
    int kind; /* what owns the node (see conc.h) */
} conc_heap_node_t;

typedef struct conc_heap {
    conc_heap_node_t **nodes;
    size_t len, cap;
    uint64_t next_seq;
} conc_heap_t;

void conc_heap_init(conc_heap_t *h);
void conc_heap_free(conc_heap_t *h);
/* Makes room for n nodes in all. Returns 0, or -1 when out of memory. */
int conc_heap_reserve(conc_heap_t *h, size_t n);
/* Adds node n, its deadline already set. Requires room (conc_heap_reserve): never fails. */
void conc_heap_push(conc_heap_t *h, conc_heap_node_t *n);
/* Removes n if it is in the heap; harmless otherwise. */
void conc_heap_remove(conc_heap_t *h, conc_heap_node_t *n);

static inline conc_heap_node_t *conc_heap_min(const conc_heap_t *h)
{
    return h->len ? h->nodes[0] : NULL;
}

static inline int conc_heap_contains(const conc_heap_node_t *n)
{
    return n->index != CONC_HEAP_NONE;
}

#endif
