/* Shared by the C examples: exit with the status and the thread's last error when a libswm call fails. */
#ifndef SWM_EXAMPLE_CHECK_H
#define SWM_EXAMPLE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "swm.h"

static inline void check(swm_status status, const char *what) {
  if (status == SWM_STATUS_OK) return;
  char message[1024];
  swm_last_error(message, sizeof message, NULL);
  fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, message);
  exit(1);
}

#endif
