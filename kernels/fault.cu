// Fault injection for testing deadline handling on a GPU host: a kernel that keeps the stream busy for a given
// time (the GPU-side stall a control loop must survive), measured with the global nanosecond timer.

extern "C" __global__ void swm_gpu_delay(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        __nanosleep(10000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
