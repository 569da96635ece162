// Sampling-planner distribution updates (docs/spec/planners.md §3-§5). Shapes: B envs, N candidates, K elites,
// J = H·Da values per candidate sequence; mean/std are (B, J).
//
//   init_distribution_f32:  mean[b, t] = warm[b, t + shift] while t + shift < H, else 0; std = var_scale;
//                           state[1] (elites carried) = 0 and, for fixed-seed sampling, state[0] (draw) = 0.
//                           (each thread walks its (b, d) column in ascending t, so warm may even alias mean).
//   compose_candidates_f32: X[b, 0] = mean; X[b, 1..=keep] = previous elites (iCEM); else eps·std + mean;
//                           optionally clamped per action dim to [low, high]. `keep` is read from state[1].
//   update_from_elites_f32: gathers the elites X[b, idx[b, :]], then
//                           mode 0 (CEM):  mean = elite mean, std = unbiased elite std;
//                           mode 1 (iCEM): the same blended with momentum alpha (weight of the old value);
//                           mode 2 (MPPI): mean = Σ softmax(-(v - v_min)/T)·elite, std unchanged.
//                           One warp per (env, value) column, its lanes taking every 32nd elite.
//                           Writes the elites (for iCEM's carry-over), the best one into `best` when given (iCEM
//                           with return_mean=False returns it), the reported cost (mean of the elite costs, as
//                           0.1.1 reports for every solver) and state[1] = keep_next.

extern "C" __global__ void init_distribution_f32(float* mean, float* __restrict__ std, const float* warm, long long b,
                                                 int h, int da, int shift, float var_scale,
                                                 long long* __restrict__ state, int reset_draw) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    state[1] = 0;
    if (reset_draw) state[0] = 0;
  }
  const long long columns = b * da;
  for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < columns;
       c += (long long)gridDim.x * blockDim.x) {
    const long long bi = c / da;
    const int d = (int)(c % da);
    float* m = mean + bi * h * da + d;
    float* s = std + bi * h * da + d;
    const float* w = warm ? warm + bi * h * da + d : nullptr;
    for (int t = 0; t < h; ++t) {
      m[t * da] = (w && t + shift < h) ? w[(t + shift) * da] : 0.0f;
      s[t * da] = var_scale;
    }
  }
}

extern "C" __global__ void compose_candidates_f32(const float* __restrict__ eps, const float* __restrict__ mean,
                                                  const float* __restrict__ std, const float* __restrict__ prev,
                                                  int prev_k, const long long* __restrict__ state,
                                                  const float* __restrict__ low, const float* __restrict__ high,
                                                  float* __restrict__ out, long long b, long long n, int j, int da) {
  const long long total = b * n * j;
  const long long keep = prev ? state[1] : 0;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long bi = e / (n * j);
    const long long ni = (e / j) % n;
    const int jj = (int)(e % j);
    float x;
    if (ni == 0) {
      x = mean[bi * j + jj];
    } else if (ni <= keep) {
      x = prev[(bi * prev_k + (ni - 1)) * j + jj];
    } else {
      x = __fadd_rn(__fmul_rn(eps[e], std[bi * j + jj]), mean[bi * j + jj]);
    }
    if (low) {
      const int d = jj % da;
      x = fminf(fmaxf(x, low[d]), high[d]);
    }
    out[e] = x;
  }
}

// One warp per (env, value) column: lane l takes elites l, l + 32, …, and the warp sums its lanes' partial sums in
// a fixed tree (results are deterministic). Launched with whole warps (two per block).
__device__ __forceinline__ float warp_total(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

extern "C" __global__ void update_from_elites_f32(const float* __restrict__ cand, const int* __restrict__ index,
                                                  const float* __restrict__ value, float* __restrict__ mean,
                                                  float* __restrict__ std, float* __restrict__ elites,
                                                  float* __restrict__ best,
                                                  float* __restrict__ cost, long long* __restrict__ state,
                                                  long long b, long long n, int k, int j, int mode, float alpha,
                                                  float temperature, long long keep_next) {
  const int lane = threadIdx.x & 31;
  const long long columns = b * j;
  const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long c = blockIdx.x * (long long)(blockDim.x >> 5) + (threadIdx.x >> 5); c < columns; c += warps) {
    const long long bi = c / j;
    const int jj = (int)(c % j);
    const int* idx = index + bi * k;
    const float* val = value + bi * k;
    if (best && lane == 0) best[c] = cand[(bi * n + idx[0]) * j + jj];
    if (mode == 2) {
      const float vmin = val[0];
      float wsum = 0.0f, acc = 0.0f;
      for (int i = lane; i < k; i += 32) {
        const float x = cand[(bi * n + idx[i]) * j + jj];
        const float w = expf(-(val[i] - vmin) / temperature);
        wsum += w;
        acc += w * x;
        if (elites) elites[(bi * k + i) * j + jj] = x;
      }
      wsum = warp_total(wsum);
      acc = warp_total(acc);
      if (lane == 0) mean[c] = acc / wsum;
    } else {
      float sum = 0.0f;
      for (int i = lane; i < k; i += 32) {
        const float x = cand[(bi * n + idx[i]) * j + jj];
        sum += x;
        if (elites) elites[(bi * k + i) * j + jj] = x;
      }
      const float m = warp_total(sum) / (float)k;
      float sq = 0.0f;
      for (int i = lane; i < k; i += 32) {
        const float dx = cand[(bi * n + idx[i]) * j + jj] - m;
        sq += dx * dx;
      }
      const float s = sqrtf(warp_total(sq) / (float)(k - 1));
      if (lane == 0) {
        if (mode == 1) {
          mean[c] = alpha * mean[c] + (1.0f - alpha) * m;
          std[c] = alpha * std[c] + (1.0f - alpha) * s;
        } else {
          mean[c] = m;
          std[c] = s;
        }
      }
    }
    if (jj == 0) {
      float vs = 0.0f;
      for (int i = lane; i < k; i += 32) vs += val[i];
      vs = warp_total(vs);
      if (lane == 0) cost[bi] = vs / (float)k;
    }
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) state[1] = keep_next;
}
