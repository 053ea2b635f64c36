// tls.c — thread exit: pthread_key destructors and _Thread_local data that free memory.
//
// A thread's exit gives its allocator cache back, and code that runs after that point (key
// destructors run in unspecified order, and again for keys they set anew, up to
// PTHREAD_DESTRUCTOR_ITERATIONS rounds) still calls malloc and free. Blocks allocated by a
// thread that has exited are freed later by other threads. Threads exit by returning, by
// pthread_exit, and detached; hundreds of them, a few at a time. Every thread's destructors
// must all run to the end: each thread reports when its last one has (a condition variable:
// detached threads cannot be joined), and main checks the exact counts.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

enum { WAVES = 40, PER_WAVE = 8, LIST = 64 };

static pthread_key_t key_list, key_again, key_late;
static atomic_long destructor_frees, destructor_rounds;

// Threads whose three destructors have all finished (the last one signals `all_done`).
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t all_done = PTHREAD_COND_INITIALIZER;
static long threads_done;

// Thread-locals the destructors free: a pointer to a block and a small array of them.
static _Thread_local char *tl_block;
static _Thread_local void *tl_list[LIST];
static _Thread_local int tl_round;
// Destructors of this thread still to finish (free_list, again's last round, late).
static _Thread_local int tl_pending;

static void destructor_finished(void) {
    if (--tl_pending > 0) return;
    pthread_mutex_lock(&done_lock);
    threads_done++;
    pthread_cond_broadcast(&all_done);
    pthread_mutex_unlock(&done_lock);
}

// Blocks that outlive their thread, freed by main.
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static void *orphans[WAVES * PER_WAVE * 4];
static size_t norphans;

static void free_list_destructor(void *value) {
    // value is the thread's tl_list marker; free everything the thread-locals point to.
    CHECK(value == (void *)tl_list);
    for (int i = 0; i < LIST; i++) {
        if (tl_list[i] != NULL) {
            CHECK(verify_pattern(tl_list[i], 24, (uintptr_t)tl_list[i]));
            free(tl_list[i]);
            tl_list[i] = NULL;
            atomic_fetch_add(&destructor_frees, 1);
        }
    }
    CHECK(verify_pattern(tl_block, 3000, 5));
    free(tl_block);
    tl_block = NULL;
    destructor_finished();
}

// Allocates in its destructor and sets its key again, so it runs in a second round.
static void again_destructor(void *value) {
    atomic_fetch_add(&destructor_rounds, 1);
    free(value);
    if (tl_round++ < 2) {
        char *p = malloc(100 + (size_t)tl_round * 5000);
        CHECK(p != NULL);
        memset(p, tl_round, 100);
        CHECK(pthread_setspecific(key_again, p) == 0);
    } else {
        destructor_finished();
    }
}

// Runs after the others may have: allocates, reallocates and frees once more.
static void late_destructor(void *value) {
    char *p = value;
    CHECK(strcmp(p, "late") == 0);
    p = realloc(p, 70000);
    CHECK(p != NULL && strcmp(p, "late") == 0);
    void *q = calloc(10, 10);
    CHECK(q != NULL);
    free(q);
    free(p);
    destructor_finished();
}

static void setup_thread_state(uint64_t seed) {
    tl_pending = 3;
    tl_block = malloc(3000);
    CHECK(tl_block != NULL);
    fill_pattern(tl_block, 3000, 5);
    for (int i = 0; i < LIST; i++) {
        size_t size = 24 + (size_t)(rng_next(&seed) % (i % 8 == 0 ? 50000 : 600));
        tl_list[i] = malloc(size);
        CHECK(tl_list[i] != NULL);
        fill_pattern(tl_list[i], 24, (uintptr_t)tl_list[i]);
    }
    CHECK(pthread_setspecific(key_list, tl_list) == 0);
    CHECK(pthread_setspecific(key_again, malloc(64)) == 0);
    char *late = malloc(16);
    CHECK(late != NULL);
    strcpy(late, "late");
    CHECK(pthread_setspecific(key_late, late) == 0);
    // Some blocks outlive the thread.
    pthread_mutex_lock(&orphan_lock);
    for (int i = 0; i < 3; i++) {
        void *o = malloc(i == 2 ? 100000 : 48);
        CHECK(o != NULL);
        fill_pattern(o, 48, 11);
        orphans[norphans++] = o;
    }
    pthread_mutex_unlock(&orphan_lock);
    // And some churn, so the thread's cache holds partly used spans when it exits.
    void *tmp[200];
    for (int i = 0; i < 200; i++) tmp[i] = malloc(16 + (size_t)(i % 40) * 8);
    for (int i = 0; i < 200; i += 2) free(tmp[i]);
    for (int i = 1; i < 200; i += 2) free(tmp[i]);
}

static void *returning_thread(void *arg) {
    setup_thread_state((uint64_t)(uintptr_t)arg);
    return arg;
}

static void *exiting_thread(void *arg) {
    setup_thread_state((uint64_t)(uintptr_t)arg);
    pthread_exit(arg);
}

static void *detached_thread(void *arg) {
    setup_thread_state((uint64_t)(uintptr_t)arg);
    return NULL;
}

int main(void) {
    alarm(120);
    CHECK(pthread_key_create(&key_list, free_list_destructor) == 0);
    CHECK(pthread_key_create(&key_again, again_destructor) == 0);
    CHECK(pthread_key_create(&key_late, late_destructor) == 0);

    long detached = 0;
    for (int w = 0; w < WAVES; w++) {
        pthread_t t[PER_WAVE];
        for (int i = 0; i < PER_WAVE; i++) {
            uintptr_t seed = (uintptr_t)(w * PER_WAVE + i + 1);
            if (i == PER_WAVE - 1 && w % 4 == 0) {
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                pthread_t d;
                CHECK(pthread_create(&d, &attr, detached_thread, (void *)seed) == 0);
                pthread_attr_destroy(&attr);
                detached++;
                t[i] = 0;
                continue;
            }
            CHECK(pthread_create(&t[i], NULL, i % 2 ? exiting_thread : returning_thread, (void *)seed) == 0);
        }
        for (int i = 0; i < PER_WAVE; i++) {
            if (t[i] == 0) continue;
            void *ret = NULL;
            CHECK(pthread_join(t[i], &ret) == 0);
            CHECK(ret == (void *)(uintptr_t)(w * PER_WAVE + i + 1));
        }
        // Free what exited threads left behind.
        pthread_mutex_lock(&orphan_lock);
        for (size_t i = 0; i < norphans; i++) {
            CHECK(verify_pattern(orphans[i], 48, 11));
            free(orphans[i]);
        }
        norphans = 0;
        pthread_mutex_unlock(&orphan_lock);
    }
    // Joined threads have run their destructors; wait for the detached ones' to finish.
    long threads = WAVES * PER_WAVE;
    CHECK(detached == WAVES / 4);
    pthread_mutex_lock(&done_lock);
    while (threads_done < threads) pthread_cond_wait(&all_done, &done_lock);
    CHECKF(threads_done == threads, "%ld threads finished their destructors, %ld started", threads_done, threads);
    pthread_mutex_unlock(&done_lock);

    // Every thread freed its whole list, and `again` ran three rounds in every thread.
    CHECKF(atomic_load(&destructor_frees) == threads * LIST, "destructor frees %ld", atomic_load(&destructor_frees));
    CHECKF(atomic_load(&destructor_rounds) == threads * 3, "destructor rounds %ld", atomic_load(&destructor_rounds));

    // The main thread's own state is still usable, and so is the heap.
    setup_thread_state(99);
    void *p = malloc(12345);
    CHECK(p != NULL);
    free(p);
    printf("OK tls\n");
    return 0;
}
