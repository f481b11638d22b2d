/*
 * bucket.h: the token-bucket arithmetic of conc.rate, after golang.org/x/time/rate, with no
 * Lua in it (rate.c binds it).
 *
 * Times and durations are seconds as doubles; the caller reads the clock and passes `now`.
 * A limit is in tokens per second: HUGE_VAL is no limit (rate.inf), 0 mints nothing. The
 * bucket starts full and never holds more than burst; it goes negative while reservations
 * wait for their tokens (R5).
 *
 * Departures from Go, each a rule of SEMANTICS.md:
 * - Time never runs backwards (D4, R35): a `now` earlier than the last update counts as that
 *   update's time, so a clock that goes back mints nothing, and nothing is rewound.
 * - A deficit within CONC_BUCKET_SLACK of zero counts as none, so that float rounding never
 *   turns a full bucket into "not quite" (R15).
 * - A reservation whose wait would be infinite (limit 0, or a limit so tiny that the wait
 *   overflows) is not ok, where Go books it ~292 years ahead (R13, R14).
 * - Cancelling a reservation twice restores tokens once (D5, R25).
 */
#ifndef CONC_BUCKET_H
#define CONC_BUCKET_H

#define CONC_BUCKET_SLACK 1e-9

typedef struct conc_bucket {
    double limit;      /* tokens per second; HUGE_VAL: every event is allowed */
    double burst;      /* a whole number >= 0 */
    double tokens;     /* as of `last`; at most burst, below 0 while reservations wait */
    double last;       /* when tokens was last brought up to date */
    double last_event; /* the latest act time of a reservation, past or future */
} conc_bucket_t;

typedef struct conc_reservation {
    int ok;
    double tokens; /* booked; 0 once cancelled, or when nothing was taken from the bucket */
    double act;    /* when the tokens may be used */
    double limit;  /* the limit when it was made (R24) */
} conc_reservation_t;

void conc_bucket_init(conc_bucket_t *b, double limit, double burst, double now);

/* The tokens there would be at now, without changing anything (R34). */
double conc_bucket_tokens_at(const conc_bucket_t *b, double now);

/* How long from now until n tokens are there, not counting later reservations:
 * 0 when they are there now, HUGE_VAL when they never will be (n > burst, or no refill). */
double conc_bucket_wait_for(const conc_bucket_t *b, double now, double n);

/* Books n tokens, to be used no sooner than now + at_least, when they can be there within
 * now + max_wait (HUGE_VAL: any time) and n <= burst. A reservation that is not ok changes
 * nothing (R6). Returns r->ok. */
int conc_bucket_reserve(conc_bucket_t *b, double now, double n, double max_wait, double at_least,
                        conc_reservation_t *r);

/* Gives back the tokens of r that later reservations have not come to depend on, unless its
 * act time has passed (R18-R25); a second call does nothing. */
void conc_bucket_cancel(conc_bucket_t *b, double now, conc_reservation_t *r);

/* Both bring the tokens up to now at the old settings first (R33). */
void conc_bucket_set_limit(conc_bucket_t *b, double now, double limit);
void conc_bucket_set_burst(conc_bucket_t *b, double now, double burst);

#endif
