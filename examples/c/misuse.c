/* Misuse of libswm must return statuses with messages, never crash or corrupt memory: run under AddressSanitizer
 * (make -C examples/c check) on a machine with or without a GPU. Exits non-zero on the first wrong answer. */
#include <stdio.h>
#include <string.h>

#include "swm.h"

static int failures = 0;

#define EXPECT(call, status)                                                                          \
  do {                                                                                                \
    swm_status got_ = (call);                                                                         \
    if (got_ != (status)) {                                                                           \
      char m_[512] = "";                                                                              \
      swm_last_error(m_, sizeof m_, NULL);                                                            \
      fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, __LINE__, #call, (int)got_, \
              (int)(status), m_);                                                                     \
      failures++;                                                                                     \
    }                                                                                                 \
  } while (0)

int main(void) {
  if (swm_abi_version() != SWM_ABI_VERSION) return 1;
  swm_engine *engine = (swm_engine *)0x1;
  EXPECT(swm_engine_open(NULL, NULL, &engine), SWM_STATUS_NULL_ARGUMENT);
  EXPECT(swm_engine_open("/nonexistent", NULL, NULL), SWM_STATUS_NULL_ARGUMENT);
  swm_engine_options small = {.struct_size = 4};
  EXPECT(swm_engine_open("/nonexistent", &small, &engine), SWM_STATUS_STRUCT_SIZE);
  swm_engine_options bad_deadline = {.struct_size = sizeof bad_deadline, .deadline_ms = -1.0};
  EXPECT(swm_engine_open("/nonexistent", &bad_deadline, &engine), SWM_STATUS_INVALID_ARGUMENT);
  uint64_t event = 0;
  EXPECT(swm_engine_plan_async(NULL, &event), SWM_STATUS_NULL_ARGUMENT);
  float collected[4];
  EXPECT(swm_engine_plan_collect(NULL, collected, 4, 0, NULL), SWM_STATUS_NULL_ARGUMENT);
  swm_engine_options bad_wait = {.struct_size = sizeof bad_wait, .wait = 7};
  EXPECT(swm_engine_open("/nonexistent", &bad_wait, &engine), SWM_STATUS_UNKNOWN_ENUM);
  swm_status opened = swm_engine_open("/nonexistent", NULL, &engine);
  if (opened == SWM_STATUS_OK || engine != NULL) {
    fprintf(stderr, "opening a missing artifact returned %d with handle %p\n", (int)opened, (void *)engine);
    failures++;
  }
  /* The last error: its size, a short buffer (nothing written), the message. */
  size_t length = 0;
  EXPECT(swm_last_error(NULL, 0, &length), SWM_STATUS_OK);
  char tiny[4] = {'x', 'x', 'x', 'x'};
  EXPECT(swm_last_error(tiny, sizeof tiny, NULL), SWM_STATUS_BUFFER_TOO_SMALL);
  if (length < 2 || tiny[0] != 'x') failures++;
  char message[512];
  EXPECT(swm_last_error(message, sizeof message, NULL), SWM_STATUS_OK);
  if (strncmp(message, "swm_engine_open", 15) != 0) {
    fprintf(stderr, "unexpected message: %s\n", message);
    failures++;
  }
  /* Calls after the failed open: the NULL handle it left. */
  float actions[8];
  EXPECT(swm_engine_plan(engine, actions, 8, 0, NULL), SWM_STATUS_NULL_ARGUMENT);
  EXPECT(swm_engine_reset(engine), SWM_STATUS_NULL_ARGUMENT);
  EXPECT(swm_engine_free(NULL), SWM_STATUS_OK);
  /* Handles that were never opened are recognised without being dereferenced. */
  swm_engine *bogus = (swm_engine *)(void *)message;
  EXPECT(swm_engine_free(bogus), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_free(bogus), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_commit_goal(bogus), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_set_state(bogus, "state", actions, 8), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_set_jpeg(bogus, "pixels", (const unsigned char *)"x", 1), SWM_STATUS_INVALID_HANDLE);
  swm_frame frame = {.struct_size = sizeof frame, .format = 99, .width = 2, .height = 2, .pitch = 6};
  EXPECT(swm_engine_set_frame(bogus, "pixels", &frame), SWM_STATUS_INVALID_HANDLE);
  swm_planner_options planner = {.struct_size = sizeof planner, .solver = 42};
  EXPECT(swm_engine_set_planner(bogus, &planner), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_set_deadline(bogus, -5.0), SWM_STATUS_INVALID_ARGUMENT);
  swm_engine_info info = {.struct_size = sizeof info};
  EXPECT(swm_engine_describe(bogus, &info), SWM_STATUS_INVALID_HANDLE);
  EXPECT(swm_engine_describe(NULL, &info), SWM_STATUS_NULL_ARGUMENT);
  if (failures) {
    fprintf(stderr, "%d misuse checks failed\n", failures);
    return 1;
  }
  printf("misuse: every check returned its status\n");
  return 0;
}
