/*
 * bucket.c: token-bucket arithmetic (see bucket.h for the model and the departures from Go).
 */
#include <math.h>
#include "bucket.h"

void conc_bucket_init(conc_bucket_t *b, double limit, double burst, double now)
{
    b->limit = limit;
    b->burst = burst;
    b->tokens = burst; /* R3: starts full */
    b->last = now;
    b->last_event = now;
}

/* D4: a time before the last update counts as that update's time. */
static double clamp(const conc_bucket_t *b, double now)
{
    return now < b->last ? b->last : now;
}

/* The tokens at t (t >= b->last): what was there plus what the limit minted, up to burst. */
static double refill(const conc_bucket_t *b, double t)
{
    double tokens;
    if (b->limit == HUGE_VAL) /* nothing is ever taken */
        return b->burst;
    tokens = b->tokens + (b->limit > 0 ? (t - b->last) * b->limit : 0);
    return tokens > b->burst ? b->burst : tokens;
}

/* Seconds until the bucket holding `tokens` (maybe negative) holds 0 again. */
static double time_to_fill(double tokens, double limit)
{
    if (tokens >= -CONC_BUCKET_SLACK) /* R15 */
        return 0;
    if (limit <= 0)
        return HUGE_VAL;
    return -tokens / limit; /* HUGE_VAL when it overflows (R14) */
}

double conc_bucket_tokens_at(const conc_bucket_t *b, double now)
{
    return refill(b, clamp(b, now));
}

double conc_bucket_wait_for(const conc_bucket_t *b, double now, double n)
{
    if (b->limit == HUGE_VAL)
        return 0;
    if (n > b->burst)
        return HUGE_VAL;
    return time_to_fill(refill(b, clamp(b, now)) - n, b->limit);
}

int conc_bucket_reserve(conc_bucket_t *b, double now, double n, double max_wait, double at_least,
                        conc_reservation_t *r)
{
    double t, tokens, wait;
    r->ok = 0;
    r->tokens = 0;
    r->act = HUGE_VAL;
    r->limit = b->limit;
    if (b->limit == HUGE_VAL) { /* R1: always, whatever n and burst; nothing is taken */
        r->ok = 1;
        r->act = now + at_least;
        return 1;
    }
    t = clamp(b, now);
    tokens = refill(b, t) - n;
    wait = time_to_fill(tokens, b->limit);
    if (wait < at_least)
        wait = at_least;
    if (n > b->burst || wait == HUGE_VAL || wait > max_wait) /* R7, R13, R28; R6: no change */
        return 0;
    r->ok = 1;
    r->tokens = n;
    r->act = t + wait;
    b->last = t;
    b->tokens = tokens;
    if (r->act > b->last_event)
        b->last_event = r->act;
    return 1;
}

void conc_bucket_cancel(conc_bucket_t *b, double now, conc_reservation_t *r)
{
    double t = clamp(b, now), n = r->tokens, restore, tokens;
    r->tokens = 0; /* D5: once */
    if (!r->ok || n == 0 || b->limit == HUGE_VAL || r->act < t) /* R19, R23 */
        return;
    /* Reservations made after r (up to last_event) counted on r's tokens being gone: give
     * back only what they have not come to depend on (R20-R22), at r's own limit (R24). */
    restore = n - r->limit * (b->last_event - r->act);
    if (!(restore > 0))
        return;
    tokens = refill(b, t) + restore;
    b->tokens = tokens > b->burst ? b->burst : tokens;
    b->last = t;
    if (r->act == b->last_event && r->limit > 0) {
        double prev = r->act - n / r->limit;
        if (prev >= t)
            b->last_event = prev;
    }
}

void conc_bucket_set_limit(conc_bucket_t *b, double now, double limit)
{
    double t = clamp(b, now);
    b->tokens = refill(b, t);
    b->last = t;
    b->limit = limit;
}

void conc_bucket_set_burst(conc_bucket_t *b, double now, double burst)
{
    double t = clamp(b, now);
    b->tokens = refill(b, t);
    b->last = t;
    b->burst = burst;
}
