/*
 * heap.c: the timer heap (see heap.h). Owns only the array of node pointers; the nodes
 * belong to tasks and timers.
 */
#include <stdlib.h>
#include "heap.h"

static int before(const conc_heap_node_t *a, const conc_heap_node_t *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(conc_heap_t *h, size_t i, conc_heap_node_t *n)
{
    h->nodes[i] = n;
    n->index = i;
}

static void sift_up(conc_heap_t *h, size_t i)
{
    conc_heap_node_t *n = h->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(n, h->nodes[parent]))
            break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(conc_heap_t *h, size_t i)
{
    conc_heap_node_t *n = h->nodes[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && before(h->nodes[child + 1], h->nodes[child]))
            child++;
        if (!before(h->nodes[child], n))
            break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, n);
}

void conc_heap_init(conc_heap_t *h)
{
    h->nodes = NULL;
    h->len = h->cap = 0;
    h->next_seq = 0;
}

void conc_heap_free(conc_heap_t *h)
{
    size_t i;
    for (i = 0; i < h->len; i++)
        h->nodes[i]->index = CONC_HEAP_NONE;
    free(h->nodes);
    conc_heap_init(h);
}

int conc_heap_reserve(conc_heap_t *h, size_t n)
{
    size_t cap;
    conc_heap_node_t **nodes;
    if (n <= h->cap)
        return 0;
    cap = h->cap ? h->cap : 64;
    while (cap < n)
        cap *= 2;
    nodes = realloc(h->nodes, cap * sizeof *nodes);
    if (nodes == NULL)
        return -1;
    h->nodes = nodes;
    h->cap = cap;
    return 0;
}

void conc_heap_push(conc_heap_t *h, conc_heap_node_t *n)
{
    n->seq = h->next_seq++;
    h->nodes[h->len] = n;
    n->index = h->len++;
    sift_up(h, n->index);
}

void conc_heap_remove(conc_heap_t *h, conc_heap_node_t *n)
{
    size_t i = n->index;
    conc_heap_node_t *last;
    if (i == CONC_HEAP_NONE)
        return;
    n->index = CONC_HEAP_NONE;
    last = h->nodes[--h->len];
    if (last == n)
        return;
    place(h, i, last);
    if (i > 0 && before(last, h->nodes[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}
