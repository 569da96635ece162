/* The C ABI's cost per control step: wall time of swm_engine_plan (and of staging the observation) as the C
 * caller sees it, minus the engine's own step time that the call reports (swm_plan_result.wall_ms), p50/p99 over N
 * steps after a warm-up. Inputs: zero state vectors and synthetic 224x224 RGB frames.
 *
 *   make -C examples/c bench && examples/c/bench ARTIFACT_DIR [STEPS] [poll|inline]
 *
 * The third argument picks swm_engine_options.wait: poll (the default: an engine thread, the caller polls for the
 * reply) or inline (the call runs on the calling thread).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "swm.h"

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void stage(swm_engine *engine, unsigned inputs) {
  static unsigned char rgb[224 * 224 * 3];
  static float state[4096];
  for (unsigned i = 0; i < inputs; i++) {
    swm_input_info input = {.struct_size = sizeof input};
    check(swm_engine_input(engine, i, &input), "swm_engine_input");
    if (input.kind == 1) {
      check(swm_engine_set_state(engine, (const char *)input.name, state, input.dim), "swm_engine_set_state");
    } else {
      swm_frame frame = {.struct_size = sizeof frame, .format = SWM_PIXEL_FORMAT_RGB8, .width = 224,
                         .height = 224, .pitch = 224 * 3, .data = rgb, .size = sizeof rgb};
      check(swm_engine_set_frame(engine, (const char *)input.name, &frame), "swm_engine_set_frame");
    }
  }
}

static void report(const char *what, double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  printf("%-44s p50 %8.2f us  p99 %8.2f us  (n=%d)\n", what, v[n / 2], v[(n * 99) / 100], n);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ARTIFACT_DIR [STEPS] [poll|inline]\n", argv[0]);
    return 2;
  }
  int steps = argc > 2 ? atoi(argv[2]) : 500;
  if (steps < 10) steps = 10;
  int inline_calls = argc > 3 && strcmp(argv[3], "inline") == 0;
  swm_engine_options options = {.struct_size = sizeof options, .wait = inline_calls ? SWM_WAIT_INLINE : SWM_WAIT_POLL};
  swm_engine *engine = NULL;
  check(swm_engine_open(argv[1], &options, &engine), "swm_engine_open");
  swm_engine_info info = {.struct_size = sizeof info};
  check(swm_engine_describe(engine, &info), "swm_engine_describe");
  if (info.family == 0) {
    stage(engine, info.inputs);
    check(swm_engine_commit_goal(engine), "swm_engine_commit_goal");
  }
  double *plan = malloc(sizeof(double) * (size_t)steps), *full = malloc(sizeof(double) * (size_t)steps);
  double *around = malloc(sizeof(double) * (size_t)steps), *handover = malloc(sizeof(double) * (size_t)steps);
  double *before = malloc(sizeof(double) * (size_t)steps), *after = malloc(sizeof(double) * (size_t)steps);
  float actions[256];
  for (int i = -20; i < steps; i++) { /* 20 warm-up steps capture the graphs */
    double t0 = now_us();
    stage(engine, info.inputs);
    double t1 = now_us();
    swm_plan_result r = {.struct_size = sizeof r};
    check(swm_engine_plan(engine, actions, 256, 0, &r), "swm_engine_plan");
    double t2 = now_us();
    if (i >= 0) {
      plan[i] = (t2 - t1) - r.wall_ms * 1e3;
      full[i] = (t2 - t0) - r.wall_ms * 1e3;
      around[i] = (r.job_ms - r.wall_ms) * 1e3; /* on the engine thread, outside the step */
      handover[i] = (t2 - t1) - r.job_ms * 1e3; /* between the threads */
      before[i] = r.before_step_ms * 1e3;       /* the observation built from the staged inputs */
      after[i] = r.after_step_ms * 1e3;         /* the result read into the reply */
    }
  }
  /* The hand-over alone: a call that goes to the engine thread and does no GPU work. */
  double *hop = malloc(sizeof(double) * (size_t)steps);
  for (int i = 0; i < steps; i++) {
    double t0 = now_us();
    check(swm_engine_set_deadline(engine, 0.0), "swm_engine_set_deadline");
    hop[i] = now_us() - t0;
  }
  printf("C ABI overhead over the engine step (%s, %u inputs, %s):\n", info.family == 0 ? "LeWM" : "TD-MPC2",
         info.inputs, inline_calls ? "inline calls" : "engine thread");
  report("swm_engine_plan call", plan, steps);
  report("staging the observation + swm_engine_plan", full, steps);
  report("  of which: on the engine thread, outside the step", around, steps);
  report("    before the step (observation)", before, steps);
  report("    after the step (result)", after, steps);
  report("  of which: handing the call over and back", handover, steps);
  report("a call without GPU work (set_deadline)", hop, steps);
  free(hop);
  free(around);
  free(before);
  free(after);
  free(handover);
  free(plan);
  free(full);
  check(swm_engine_free(engine), "swm_engine_free");
  return 0;
}
