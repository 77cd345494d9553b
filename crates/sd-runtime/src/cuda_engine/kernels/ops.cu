// sd-runtime's CUDA kernels for everything but matrix products, convolutions and attention
// (cuBLAS, cuDNN and flash_attention.cu do those). Compiled by NVRTC at load; the Rust side
// (cuda_engine/translate) mirrors every signature and enum below.
//
// Element types (DT_*) are passed at run time: every kernel reads and writes through ld/st,
// computing in fp32, so one kernel serves fp16, fp32, int32 and bool values. Memory-bound
// kernels are grid-stride loops; reductions use one block per row when the reduced axis is
// innermost and one thread per output otherwise (coalesced across the inner axis).
#include <cuda_fp16.h>

#define DT_F16 0
#define DT_F32 1
#define DT_I32 2
#define DT_U8 3
#define MAX_RANK 6
#define INFINITY __int_as_float(0x7f800000)

typedef long long i64;

__device__ __forceinline__ float ld(const void* p, int dt, i64 i) {
    switch (dt) {
    case DT_F16: return __half2float(((const __half*)p)[i]);
    case DT_F32: return ((const float*)p)[i];
    case DT_I32: return (float)((const int*)p)[i];
    default: return (float)((const unsigned char*)p)[i];
    }
}

__device__ __forceinline__ void st(void* p, int dt, i64 i, float v) {
    switch (dt) {
    case DT_F16: ((__half*)p)[i] = __float2half_rn(v); break;
    case DT_F32: ((float*)p)[i] = v; break;
    case DT_I32: ((int*)p)[i] = (int)v; break;
    default: ((unsigned char*)p)[i] = v != 0.0f ? 1 : 0; break;
    }
}

// Activations (the runtime's Activation enum, in order).
#define ACT_NONE 0
#define ACT_SILU 1
#define ACT_RELU 2
#define ACT_GELU_EXACT 3
#define ACT_GELU_TANH 4
#define ACT_GELU_SIGMOID 5
#define ACT_SIGMOID 6

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

__device__ __forceinline__ float activate(int act, float x) {
    switch (act) {
    case ACT_SILU: return x * sigmoidf(x);
    case ACT_RELU: return fmaxf(x, 0.0f);
    case ACT_GELU_EXACT: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case ACT_GELU_SIGMOID: return x * sigmoidf(1.702f * x);
    case ACT_SIGMOID: return sigmoidf(x);
    default: return x;
    }
}

#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// ---------------------------------------------------------------------------------------
// Element-wise.

// Strides of up to three operands over one (collapsed) output shape; stride 0 broadcasts.
struct Strided3 {
    int rank;
    i64 dims[MAX_RANK];
    i64 s0[MAX_RANK];
    i64 s1[MAX_RANK];
    i64 s2[MAX_RANK];
};

__device__ __forceinline__ void offsets3(const Strided3& s, i64 i, i64& o0, i64& o1, i64& o2) {
    o0 = 0; o1 = 0; o2 = 0;
    for (int d = s.rank - 1; d >= 0; --d) {
        i64 c = i % s.dims[d];
        i /= s.dims[d];
        o0 += c * s.s0[d];
        o1 += c * s.s1[d];
        o2 += c * s.s2[d];
    }
}

#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3
#define BIN_MAX 4
#define BIN_MIN 5
#define BIN_POW 6
#define BIN_EQ 7
#define BIN_NE 8
#define BIN_LT 9
#define BIN_LE 10
#define BIN_GT 11
#define BIN_GE 12
#define BIN_FLOOR_DIV 13
#define BIN_MOD 14
#define BIN_AND 15
#define BIN_OR 16

__device__ __forceinline__ float binary_op(int op, float a, float b) {
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_MAX: return fmaxf(a, b);
    case BIN_MIN: return fminf(a, b);
    case BIN_POW: return powf(a, b);
    case BIN_EQ: return a == b;
    case BIN_NE: return a != b;
    case BIN_LT: return a < b;
    case BIN_LE: return a <= b;
    case BIN_GT: return a > b;
    case BIN_GE: return a >= b;
    case BIN_FLOOR_DIV: return floorf(a / b);
    case BIN_MOD: return a - floorf(a / b) * b;
    case BIN_AND: return (a != 0.0f) && (b != 0.0f);
    case BIN_OR: return (a != 0.0f) || (b != 0.0f);
    default: return 0.0f;
    }
}

// out = a op b (s0: out, s1: a, s2: b), then act; contiguous = every stride is the packed one.
extern "C" __global__ void sd_binary(int op, int act, int dt_in, int dt_out, i64 n, void* out,
                                     const void* a, const void* b, int contiguous, Strided3 s) {
    if (contiguous) {
        if (dt_in == DT_F16 && dt_out == DT_F16 && (n & 1) == 0 && op <= BIN_MIN) {
            // Two fp16 values per thread.
            const __half2* a2 = (const __half2*)a;
            const __half2* b2 = (const __half2*)b;
            __half2* o2 = (__half2*)out;
            GRID_STRIDE(i, n / 2) {
                float2 x = __half22float2(a2[i]);
                float2 y = __half22float2(b2[i]);
                o2[i] = __floats2half2_rn(activate(act, binary_op(op, x.x, y.x)),
                                          activate(act, binary_op(op, x.y, y.y)));
            }
            return;
        }
        GRID_STRIDE(i, n) {
            st(out, dt_out, i, activate(act, binary_op(op, ld(a, dt_in, i), ld(b, dt_in, i))));
        }
        return;
    }
    GRID_STRIDE(i, n) {
        i64 o, x, y;
        offsets3(s, i, o, x, y);
        st(out, dt_out, o, activate(act, binary_op(op, ld(a, dt_in, x), ld(b, dt_in, y))));
    }
}

// select(cond, a, b): s0 out, s1 a, s2 b; cond has its own strides.
extern "C" __global__ void sd_select(int dt_cond, int dt, i64 n, void* out, const void* cond,
                                     const void* a, const void* b, Strided3 s, Strided3 sc) {
    GRID_STRIDE(i, n) {
        i64 o, x, y, c, u, v;
        offsets3(s, i, o, x, y);
        offsets3(sc, i, c, u, v);
        st(out, dt, o, ld(cond, dt_cond, c) != 0.0f ? ld(a, dt, x) : ld(b, dt, y));
    }
}

#define UN_IDENTITY 0
#define UN_ACT 1
#define UN_EXP 2
#define UN_LOG 3
#define UN_SQRT 4
#define UN_RSQRT 5
#define UN_SIN 6
#define UN_COS 7
#define UN_TANH 8
#define UN_ABS 9
#define UN_FLOOR 10
#define UN_CEIL 11
#define UN_ROUND 12
#define UN_ERF 13
#define UN_SQUARE 14
#define UN_INVERSE 15
#define UN_CLIP 16
#define UN_LINEAR 17
#define UN_SIGN 18
#define UN_NOT 19
#define UN_EXP2 20
#define UN_SOFTPLUS 21

__device__ __forceinline__ float unary_op(int op, int act, float x, float p0, float p1) {
    switch (op) {
    case UN_ACT: return activate(act, x);
    case UN_EXP: return expf(x);
    case UN_LOG: return logf(x);
    case UN_SQRT: return sqrtf(x);
    case UN_RSQRT: return rsqrtf(x + p0);
    case UN_SIN: return sinf(x);
    case UN_COS: return cosf(x);
    case UN_TANH: return tanhf(x);
    case UN_ABS: return fabsf(x);
    case UN_FLOOR: return floorf(x);
    case UN_CEIL: return ceilf(x);
    case UN_ROUND: return rintf(x);
    case UN_ERF: return erff(x);
    case UN_SQUARE: return x * x;
    case UN_INVERSE: return 1.0f / (x + p0);
    case UN_CLIP: return fminf(fmaxf(x, p0), p1);
    case UN_LINEAR: return p0 * x + p1;
    case UN_SIGN: return (float)((x > 0.0f) - (x < 0.0f));
    case UN_NOT: return x == 0.0f;
    case UN_EXP2: return exp2f(x);
    case UN_SOFTPLUS: return log1pf(expf(x));
    default: return x;
    }
}

// Also casts: dt_in and dt_out may differ (UN_IDENTITY).
extern "C" __global__ void sd_unary(int op, int act, int dt_in, int dt_out, i64 n, void* out,
                                    const void* x, float p0, float p1) {
    if (op == UN_IDENTITY && dt_in == DT_I32 && dt_out == DT_I32) {
        GRID_STRIDE(i, n) { ((int*)out)[i] = ((const int*)x)[i]; }
        return;
    }
    GRID_STRIDE(i, n) { st(out, dt_out, i, unary_op(op, act, ld(x, dt_in, i), p0, p1)); }
}

// y[i] = act(y[i] + bias[(i / inner) % channels]) in place; bias may be null.
extern "C" __global__ void sd_bias_act(int dt, int dt_bias, i64 n, void* y, const void* bias,
                                       i64 channels, i64 inner, int act) {
    GRID_STRIDE(i, n) {
        float v = ld(y, dt, i);
        if (bias) v += ld(bias, dt_bias, (i / inner) % channels);
        st(y, dt, i, activate(act, v));
    }
}

// ---------------------------------------------------------------------------------------
// Data movement.

// out[s0 offset] = in[s1 offset], element by element over the shape; s2 holds per-axis
// moduli for the source index (tile), 0 = none. elem = 1, 2 or 4 bytes.
extern "C" __global__ void sd_copy(int elem, i64 n, void* out, const void* in, i64 out_base,
                                   i64 in_base, Strided3 s) {
    GRID_STRIDE(i, n) {
        i64 rem = i, o = out_base, x = in_base;
        for (int d = s.rank - 1; d >= 0; --d) {
            i64 c = rem % s.dims[d];
            rem /= s.dims[d];
            o += c * s.s0[d];
            x += (s.s2[d] > 0 ? c % s.s2[d] : c) * s.s1[d];
        }
        if (elem == 2) ((unsigned short*)out)[o] = ((const unsigned short*)in)[x];
        else if (elem == 4) ((unsigned int*)out)[o] = ((const unsigned int*)in)[x];
        else ((unsigned char*)out)[o] = ((const unsigned char*)in)[x];
    }
}

// Padding of a packed tensor: s.dims = output dims, s.s1 = input strides, s.s2 = input
// dims, pads_lo per axis in s.s0. mode 0 constant, 1 reflect, 2 replicate.
extern "C" __global__ void sd_pad(int dt, int mode, float value, i64 n, void* out,
                                  const void* in, Strided3 s) {
    GRID_STRIDE(i, n) {
        i64 rem = i, x = 0;
        bool inside = true;
        for (int d = s.rank - 1; d >= 0; --d) {
            i64 c = rem % s.dims[d];
            rem /= s.dims[d];
            i64 k = c - s.s0[d], m = s.s2[d];
            if (k < 0 || k >= m) {
                if (mode == 0) { inside = false; break; }
                if (mode == 1) { k = k < 0 ? -k : 2 * (m - 1) - k; }
                else { k = k < 0 ? 0 : m - 1; }
            }
            x += k * s.s1[d];
        }
        st(out, dt, i, inside ? ld(in, dt, x) : value);
    }
}

// Nearest upsampling of [planes, h, w] to [planes, oh, ow] (source ⌊o·h/oh⌋).
extern "C" __global__ void sd_upsample_nearest(int elem, i64 planes, int h, int w, int oh,
                                               int ow, void* out, const void* in) {
    i64 n = planes * oh * ow;
    GRID_STRIDE(i, n) {
        i64 x = i % ow, y = (i / ow) % oh, p = i / ((i64)ow * oh);
        i64 src = (p * h + (y * h) / oh) * w + (x * w) / ow;
        if (elem == 2) ((unsigned short*)out)[i] = ((const unsigned short*)in)[src];
        else if (elem == 4) ((unsigned int*)out)[i] = ((const unsigned int*)in)[src];
        else ((unsigned char*)out)[i] = ((const unsigned char*)in)[src];
    }
}

// out[o, j, k] = table[o, idx[j], k] (negative indices count from the end; out of range
// indices read 0... they were rejected on the host for model inputs).
extern "C" __global__ void sd_gather(int elem, int dt_idx, i64 outer, i64 axis_n, i64 inner,
                                     i64 n_idx, void* out, const void* table, const void* idx) {
    i64 n = outer * n_idx * inner;
    GRID_STRIDE(i, n) {
        i64 k = i % inner, j = (i / inner) % n_idx, o = i / (inner * n_idx);
        i64 t = (i64)ld(idx, dt_idx, j);
        if (t < 0) t += axis_n;
        bool ok = t >= 0 && t < axis_n;
        i64 src = (o * axis_n + (ok ? t : 0)) * inner + k;
        if (elem == 2) ((unsigned short*)out)[i] = ok ? ((const unsigned short*)table)[src] : 0;
        else if (elem == 4) ((unsigned int*)out)[i] = ok ? ((const unsigned int*)table)[src] : 0;
        else ((unsigned char*)out)[i] = ok ? ((const unsigned char*)table)[src] : 0;
    }
}

// gather_nd: rows of `depth` indices into the leading axes of table (dims in s.dims, packed
// strides in s.s1), each selecting `inner` contiguous elements.
extern "C" __global__ void sd_gather_nd(int elem, int dt_idx, i64 rows, int depth, i64 inner,
                                        void* out, const void* table, const void* idx, Strided3 s) {
    i64 n = rows * inner;
    GRID_STRIDE(i, n) {
        i64 k = i % inner, r = i / inner, src = k;
        bool ok = true;
        for (int d = 0; d < depth; ++d) {
            i64 t = (i64)ld(idx, dt_idx, r * depth + d);
            if (t < 0) t += s.dims[d];
            ok = ok && t >= 0 && t < s.dims[d];
            src += (ok ? t : 0) * s.s1[d];
        }
        if (elem == 2) ((unsigned short*)out)[i] = ok ? ((const unsigned short*)table)[src] : 0;
        else if (elem == 4) ((unsigned int*)out)[i] = ok ? ((const unsigned int*)table)[src] : 0;
        else ((unsigned char*)out)[i] = ok ? ((const unsigned char*)table)[src] : 0;
    }
}

// ---------------------------------------------------------------------------------------
// Reductions over the middle axis of [outer, n, inner].

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// Sum (or max) over the block; every thread gets the result. blockDim.x ≤ 1024.
__device__ float block_sum(float v, float* scratch) {
    v = warp_sum(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float* scratch) {
    v = warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

#define RED_SUM 0
#define RED_MEAN 1
#define RED_MAX 2
#define RED_MIN 3
#define RED_PROD 4
#define RED_ARGMAX 5
#define RED_ARGMIN 6
#define RED_SUMSQ 7
#define RED_L2 8
#define RED_L1 9

// One thread per output (outer × inner).
extern "C" __global__ void sd_reduce(int op, int dt_in, int dt_out, i64 outer, i64 n, i64 inner,
                                     void* out, const void* in) {
    i64 total = outer * inner;
    GRID_STRIDE(i, total) {
        i64 o = i / inner, k = i % inner;
        const i64 base = o * n * inner + k;
        float acc = (op == RED_MAX || op == RED_ARGMAX) ? -INFINITY
                  : (op == RED_MIN || op == RED_ARGMIN) ? INFINITY
                  : (op == RED_PROD) ? 1.0f : 0.0f;
        i64 best = 0;
        for (i64 j = 0; j < n; ++j) {
            float v = ld(in, dt_in, base + j * inner);
            switch (op) {
            case RED_MAX: acc = fmaxf(acc, v); break;
            case RED_MIN: acc = fminf(acc, v); break;
            case RED_PROD: acc *= v; break;
            case RED_ARGMAX: if (v > acc) { acc = v; best = j; } break;
            case RED_ARGMIN: if (v < acc) { acc = v; best = j; } break;
            case RED_SUMSQ: case RED_L2: acc += v * v; break;
            case RED_L1: acc += fabsf(v); break;
            default: acc += v; break;
            }
        }
        if (op == RED_MEAN) acc /= (float)n;
        if (op == RED_L2) acc = sqrtf(acc);
        if (op == RED_ARGMAX || op == RED_ARGMIN) acc = (float)best;
        st(out, dt_out, i, acc);
    }
}

// Softmax over the middle axis. inner == 1: one block per row; else one thread per column.
extern "C" __global__ void sd_softmax(int dt, i64 outer, i64 n, i64 inner, void* out,
                                      const void* in) {
    __shared__ float scratch[32];
    if (inner == 1) {
        for (i64 row = blockIdx.x; row < outer; row += gridDim.x) {
            const i64 base = row * n;
            float m = -INFINITY;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, ld(in, dt, base + j));
            m = block_max(m, scratch);
            float sum = 0.0f;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) sum += __expf(ld(in, dt, base + j) - m);
            sum = block_sum(sum, scratch);
            float inv = 1.0f / sum;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x)
                st(out, dt, base + j, __expf(ld(in, dt, base + j) - m) * inv);
        }
        return;
    }
    i64 total = outer * inner;
    GRID_STRIDE(i, total) {
        i64 o = i / inner, k = i % inner;
        const i64 base = o * n * inner + k;
        float m = -INFINITY;
        for (i64 j = 0; j < n; ++j) m = fmaxf(m, ld(in, dt, base + j * inner));
        float sum = 0.0f;
        for (i64 j = 0; j < n; ++j) sum += __expf(ld(in, dt, base + j * inner) - m);
        float inv = 1.0f / sum;
        for (i64 j = 0; j < n; ++j)
            st(out, dt, base + j * inner, __expf(ld(in, dt, base + j * inner) - m) * inv);
    }
}

// Layer norm over the middle axis of [outer, n, inner]; gamma/beta (length n) may be null.
extern "C" __global__ void sd_layer_norm(int dt, int dt_gb, i64 outer, i64 n, i64 inner,
                                         void* out, const void* in, const void* gamma,
                                         const void* beta, float eps) {
    __shared__ float scratch[32];
    if (inner == 1) {
        for (i64 row = blockIdx.x; row < outer; row += gridDim.x) {
            const i64 base = row * n;
            float s = 0.0f;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) s += ld(in, dt, base + j);
            float mean = block_sum(s, scratch) / (float)n;
            float q = 0.0f;
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                float d = ld(in, dt, base + j) - mean;
                q += d * d;
            }
            float rstd = rsqrtf(block_sum(q, scratch) / (float)n + eps);
            for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
                float v = (ld(in, dt, base + j) - mean) * rstd;
                if (gamma) v *= ld(gamma, dt_gb, j);
                if (beta) v += ld(beta, dt_gb, j);
                st(out, dt, base + j, v);
            }
        }
        return;
    }
    i64 total = outer * inner;
    GRID_STRIDE(i, total) {
        i64 o = i / inner, k = i % inner;
        const i64 base = o * n * inner + k;
        float s = 0.0f;
        for (i64 j = 0; j < n; ++j) s += ld(in, dt, base + j * inner);
        float mean = s / (float)n;
        float q = 0.0f;
        for (i64 j = 0; j < n; ++j) {
            float d = ld(in, dt, base + j * inner) - mean;
            q += d * d;
        }
        float rstd = rsqrtf(q / (float)n + eps);
        for (i64 j = 0; j < n; ++j) {
            float v = (ld(in, dt, base + j * inner) - mean) * rstd;
            if (gamma) v *= ld(gamma, dt_gb, j);
            if (beta) v += ld(beta, dt_gb, j);
            st(out, dt, base + j * inner, v);
        }
    }
}

// Layer norm over the middle axis of [outer, n, inner] with inner > 1: grid (⌈inner/32⌉,
// outer), 256 threads = 32 adjacent columns × 8 row groups, so reads are coalesced along the
// inner axis and every column's sums are combined in shared memory.
extern "C" __global__ void sd_layer_norm_cols(int dt, int dt_gb, i64 outer, i64 n, i64 inner,
                                              void* out, const void* in, const void* gamma,
                                              const void* beta, float eps) {
    __shared__ float red[8][33];
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const i64 col = (i64)blockIdx.x * 32 + tx;
    const bool ok = col < inner;
    const i64 base = (i64)blockIdx.y * n * inner + col;
    float s = 0.0f;
    if (ok) for (i64 j = ty; j < n; j += 8) s += ld(in, dt, base + j * inner);
    red[ty][tx] = s;
    __syncthreads();
    float mean = 0.0f;
    for (int k = 0; k < 8; ++k) mean += red[k][tx];
    mean /= (float)n;
    __syncthreads();
    float q = 0.0f;
    if (ok) for (i64 j = ty; j < n; j += 8) {
        float d = ld(in, dt, base + j * inner) - mean;
        q += d * d;
    }
    red[ty][tx] = q;
    __syncthreads();
    float var = 0.0f;
    for (int k = 0; k < 8; ++k) var += red[k][tx];
    const float rstd = rsqrtf(var / (float)n + eps);
    if (!ok) return;
    for (i64 j = ty; j < n; j += 8) {
        float v = (ld(in, dt, base + j * inner) - mean) * rstd;
        if (gamma) v *= ld(gamma, dt_gb, j);
        if (beta) v += ld(beta, dt_gb, j);
        st(out, dt, base + j * inner, v);
    }
}

// Softmax of rows of length n ≤ 256·SOFTMAX_CACHE: one block of 256 threads per row, each
// thread keeping its elements in registers, so the row is read once and written once.
#define SOFTMAX_CACHE 32
extern "C" __global__ void sd_softmax_cached(int dt, i64 rows, i64 n, void* out, const void* in) {
    __shared__ float scratch[32];
    float v[SOFTMAX_CACHE];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const i64 base = row * n;
        float m = -INFINITY;
#pragma unroll
        for (int c = 0; c < SOFTMAX_CACHE; ++c) {
            i64 j = threadIdx.x + (i64)c * blockDim.x;
            v[c] = j < n ? ld(in, dt, base + j) : -INFINITY;
            m = fmaxf(m, v[c]);
        }
        m = block_max(m, scratch);
        float sum = 0.0f;
#pragma unroll
        for (int c = 0; c < SOFTMAX_CACHE; ++c) {
            v[c] = __expf(v[c] - m);
            sum += v[c];
        }
        const float inv = 1.0f / block_sum(sum, scratch);
#pragma unroll
        for (int c = 0; c < SOFTMAX_CACHE; ++c) {
            i64 j = threadIdx.x + (i64)c * blockDim.x;
            if (j < n) st(out, dt, base + j, v[c] * inv);
        }
    }
}

// Group norm of x [batch, channels, plane] over `groups` channel groups, then per-channel
// gamma/beta (either may be null) and act. Statistics: per (batch, group), `splits` blocks
// each summing a slice into stats[(b·groups + g)·2 + {0,1}] with atomics (stats zeroed by
// sd_group_norm_zero first); sd_group_norm_apply then normalises.
extern "C" __global__ void sd_group_norm_zero(float* stats, int count) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) stats[i] = 0.0f;
}

// Sums of x and x² (shifted by the group's first element, for precision) per group.
extern "C" __global__ void sd_group_norm_stats(int dt, i64 channels, i64 plane, int groups,
                                               int splits, const void* x, float* stats) {
    __shared__ float scratch[32];
    const int bg = blockIdx.x / splits, part = blockIdx.x % splits;
    const i64 per = (channels / groups) * plane;
    const i64 base = (i64)bg * per;  // groups are contiguous in NCHW
    const i64 chunk = (per + splits - 1) / splits;
    const i64 lo = part * chunk, hi = min(per, lo + chunk);
    const float shift = ld(x, dt, base);
    float s = 0.0f, q = 0.0f;
    for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        float v = ld(x, dt, base + j) - shift;
        s += v;
        q += v * v;
    }
    s = block_sum(s, scratch);
    q = block_sum(q, scratch);
    if (threadIdx.x == 0) {
        atomicAdd(&stats[bg * 2], s);
        atomicAdd(&stats[bg * 2 + 1], q);
    }
}

extern "C" __global__ void sd_group_norm_apply(int dt, int dt_gb, i64 batch, i64 channels,
                                               i64 plane, int groups, float eps, int act,
                                               void* out, const void* x, const void* gamma,
                                               const void* beta, const float* stats) {
    const i64 n = batch * channels * plane;
    const i64 cpg = channels / groups;
    const float count = (float)(cpg * plane);
    GRID_STRIDE(i, n) {
        i64 c = (i / plane) % channels, b = i / (plane * channels);
        i64 bg = b * groups + c / cpg;
        float shift = ld(x, dt, bg * cpg * plane);
        float mean_s = stats[bg * 2] / count;
        float var = fmaxf(stats[bg * 2 + 1] / count - mean_s * mean_s, 0.0f);
        float v = (ld(x, dt, i) - shift - mean_s) * rsqrtf(var + eps);
        if (gamma) v *= ld(gamma, dt_gb, c);
        if (beta) v += ld(beta, dt_gb, c);
        st(out, dt, i, activate(act, v));
    }
}

// Fills n elements with one value.
extern "C" __global__ void sd_fill(int dt, i64 n, void* out, float value) {
    GRID_STRIDE(i, n) { st(out, dt, i, value); }
}
