/* A C controller planning with libswm in its own loop: opens an artifact, gives it a goal (LeWM) and
 * observations — a JPEG file, or synthetic 640x480 RGB frames, and zero state vectors — plans, prints the actions.
 *
 *   make -C examples/c && examples/c/controller ARTIFACT_DIR [FRAME.jpg] [STEPS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "swm.h"

static unsigned char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *data = n > 0 ? malloc((size_t)n) : NULL;
  if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = data ? (size_t)n : 0;
  return data;
}

/* Stages every input of the model: frames from the JPEG (or a synthetic frame of `seed`), states as zeros. */
static void stage(swm_engine *engine, unsigned inputs, const unsigned char *jpeg, size_t jpeg_size, unsigned seed) {
  static unsigned char rgb[640 * 480 * 3];
  for (unsigned i = 0; i < inputs; i++) {
    swm_input_info input = {.struct_size = sizeof input};
    check(swm_engine_input(engine, i, &input), "swm_engine_input");
    const char *name = (const char *)input.name;
    if (input.kind == 1) {
      float *state = calloc(input.dim, sizeof *state);
      check(swm_engine_set_state(engine, name, state, input.dim), "swm_engine_set_state");
      free(state);
    } else if (jpeg) {
      check(swm_engine_set_jpeg(engine, name, jpeg, jpeg_size), "swm_engine_set_jpeg");
    } else {
      for (size_t p = 0; p < sizeof rgb; p++) rgb[p] = (unsigned char)((p * 7 + seed * 31) & 255);
      swm_frame frame = {.struct_size = sizeof frame, .format = SWM_PIXEL_FORMAT_RGB8, .width = 640,
                         .height = 480, .pitch = 640 * 3, .data = rgb, .size = sizeof rgb};
      check(swm_engine_set_frame(engine, name, &frame), "swm_engine_set_frame");
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ARTIFACT_DIR [FRAME.jpg] [STEPS]\n", argv[0]);
    return 2;
  }
  if (swm_abi_version() != SWM_ABI_VERSION) {
    fprintf(stderr, "libswm ABI %u, this program was built for %u\n", swm_abi_version(), SWM_ABI_VERSION);
    return 1;
  }
  size_t jpeg_size = 0;
  unsigned char *jpeg = argc > 2 && strcmp(argv[2], "-") != 0 ? read_file(argv[2], &jpeg_size) : NULL;
  int steps = argc > 3 ? atoi(argv[3]) : 5;

  swm_engine_options options = {.struct_size = sizeof options, .gpu = 0};
  swm_engine *engine = NULL;
  check(swm_engine_open(argv[1], &options, &engine), "swm_engine_open");
  swm_engine_info info = {.struct_size = sizeof info};
  check(swm_engine_describe(engine, &info), "swm_engine_describe");
  printf("%s artifact, %u inputs, %u-d actions\n", info.family == 0 ? "LeWM" : "TD-MPC2", info.inputs,
         info.action_dim);
  swm_planner_options planner = {.struct_size = sizeof planner, .seed = 7};
  check(swm_engine_set_planner(engine, &planner), "swm_engine_set_planner");
  if (info.family == 0) {
    stage(engine, info.inputs, jpeg, jpeg_size, 99);
    check(swm_engine_commit_goal(engine), "swm_engine_commit_goal");
  }
  float actions[256];
  for (int step = 0; step < steps; step++) {
    stage(engine, info.inputs, jpeg, jpeg_size, (unsigned)step);
    swm_plan_result result = {.struct_size = sizeof result};
    check(swm_engine_plan(engine, actions, 256, 0, &result), "swm_engine_plan");
    printf("step %d: source %u, %u iterations, cost %.4f, plan %.3f ms GPU, action", step, result.source,
           result.iterations, result.cost, result.plan_ms);
    for (unsigned a = 0; a < result.written; a++) printf(" %.5f", actions[a]);
    printf("\n");
  }
  if (info.family == 1) {
    /* TD-MPC2's actor without planning: the policy mean. */
    size_t written = 0;
    stage(engine, info.inputs, jpeg, jpeg_size, 0);
    check(swm_engine_act(engine, 0, actions, 256, &written), "swm_engine_act");
    printf("actor mean:");
    for (size_t a = 0; a < written; a++) printf(" %.5f", actions[a]);
    printf("\n");
  }
  check(swm_engine_free(engine), "swm_engine_free");
  free(jpeg);
  return 0;
}
