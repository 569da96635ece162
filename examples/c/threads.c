/* Four C threads share one libswm handle: each stages its own observations (inputs are staged per calling thread)
 * and plans, concurrently. Checks that every plan succeeds with finite actions, that a thread's staged inputs are
 * invisible to the others (a thread that staged nothing is refused while another thread's inputs wait), and that
 * the waiting inputs are then planned on. Exits 1 on the first failure.
 *
 *   make -C examples/c threads && examples/c/threads ARTIFACT_DIR [PLANS_PER_THREAD]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "swm.h"

#define THREADS 4

static swm_engine *engine;
static unsigned inputs;
static int plans = 20;

/* Stages every input: a synthetic 224x224 RGB frame of `seed`, or a state vector of `seed`. */
static void stage(unsigned seed) {
  static _Thread_local unsigned char rgb[224 * 224 * 3];
  static _Thread_local float state[4096];
  for (unsigned i = 0; i < inputs; i++) {
    swm_input_info input = {.struct_size = sizeof input};
    check(swm_engine_input(engine, i, &input), "swm_engine_input");
    if (input.kind == 1) {
      for (unsigned d = 0; d < input.dim && d < 4096; d++) state[d] = (float)((seed * 7 + d) % 13) / 13.0f;
      check(swm_engine_set_state(engine, (const char *)input.name, state, input.dim), "swm_engine_set_state");
    } else {
      for (size_t p = 0; p < sizeof rgb; p++) rgb[p] = (unsigned char)((p * 3 + seed * 41) & 255);
      swm_frame frame = {.struct_size = sizeof frame, .format = SWM_PIXEL_FORMAT_RGB8, .width = 224, .height = 224,
                         .pitch = 224 * 3, .data = rgb, .size = sizeof rgb};
      check(swm_engine_set_frame(engine, (const char *)input.name, &frame), "swm_engine_set_frame");
    }
  }
}

/* Plans and checks the result: status OK, a solved plan, finite actions. */
static void plan_and_check(const char *who) {
  float actions[256];
  swm_plan_result r = {.struct_size = sizeof r};
  check(swm_engine_plan(engine, actions, 256, 0, &r), who);
  if (r.source != SWM_PLAN_SOURCE_SOLVED || r.written == 0) {
    fprintf(stderr, "%s: source %u, %u values\n", who, r.source, r.written);
    exit(1);
  }
  for (unsigned i = 0; i < r.written; i++) {
    if (!isfinite(actions[i])) {
      fprintf(stderr, "%s: action value %u is not finite\n", who, i);
      exit(1);
    }
  }
}

static void *worker(void *arg) {
  unsigned t = (unsigned)(size_t)arg;
  for (int k = 0; k < plans; k++) {
    stage(t * 1000 + (unsigned)k);
    plan_and_check("swm_engine_plan (worker thread)");
  }
  return NULL;
}

/* Stages on the calling thread, then waits for `go` before planning. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int staged = 0, go = 0;

static void *stager(void *arg) {
  (void)arg;
  stage(77);
  pthread_mutex_lock(&lock);
  staged = 1;
  pthread_cond_broadcast(&cond);
  while (!go) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  plan_and_check("swm_engine_plan (the thread that staged)");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ARTIFACT_DIR [PLANS_PER_THREAD]\n", argv[0]);
    return 2;
  }
  if (argc > 2) plans = atoi(argv[2]) > 0 ? atoi(argv[2]) : plans;
  check(swm_engine_open(argv[1], NULL, &engine), "swm_engine_open");
  swm_engine_info info = {.struct_size = sizeof info};
  check(swm_engine_describe(engine, &info), "swm_engine_describe");
  inputs = info.inputs;
  if (info.family == 0) { /* LeWM plans toward a goal (the handle's, whichever thread sets it) */
    stage(5);
    check(swm_engine_commit_goal(engine), "swm_engine_commit_goal");
  }

  /* Isolation: another thread stages and waits; this thread has staged nothing, so its plan is refused. */
  pthread_t s;
  if (pthread_create(&s, NULL, stager, NULL) != 0) return 1;
  pthread_mutex_lock(&lock);
  while (!staged) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  float actions[256];
  swm_plan_result r = {.struct_size = sizeof r};
  swm_status refused = swm_engine_plan(engine, actions, 256, 0, &r);
  if (refused != SWM_STATUS_BAD_INPUT) {
    fprintf(stderr, "a plan without staged inputs returned status %d, expected SWM_STATUS_BAD_INPUT\n", (int)refused);
    return 1;
  }
  char message[512];
  swm_last_error(message, sizeof message, NULL);
  printf("a thread that staged nothing: refused (%s)\n", message);
  pthread_mutex_lock(&lock);
  go = 1;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  pthread_join(s, NULL);
  printf("the other thread's staged inputs were kept and planned on\n");

  /* Concurrency: four threads, one handle. */
  pthread_t threads[THREADS];
  for (size_t t = 0; t < THREADS; t++) {
    if (pthread_create(&threads[t], NULL, worker, (void *)t) != 0) return 1;
  }
  for (size_t t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  printf("%d threads x %d plans on one handle: every plan solved with finite actions\n", THREADS, plans);
  check(swm_engine_free(engine), "swm_engine_free");
  return 0;
}
