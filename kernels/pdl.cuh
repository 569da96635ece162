// Programmatic dependent launch (sm_90+). swm launches its hot-path kernels with programmatic stream
// serialization (src/ops/launch.rs), so a kernel may start while the one before it on the stream is still
// finishing; every such kernel begins with swm_pdl_begin():
//   griddepcontrol.wait              — block until every prerequisite grid has completed and its writes are visible
//                                      (so nothing below may read or write memory before it);
//   griddepcontrol.launch_dependents — let the next kernel's blocks be scheduled now; they run their own wait, so
//                                      they only overlap their launch latency with this kernel's tail.
// Without a programmatic dependency (a plain launch, or a toolkit/arch without it) both are no-ops.
#pragma once

__device__ __forceinline__ void swm_pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
