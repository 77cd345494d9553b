// Fused flash-attention forward (FlashAttention-2 style) for fp16 operands with fp32 accumulation,
// on tensor cores through inline PTX `mma.sync.m16n8k16` (sm_80 and later; sm_90 runs it too).
// Compiled at run time by NVRTC: device code only, no host code.
//
//   o[b,h,i,:] = sum_t softmax_t(scale * <q[b,h,i,:], k[b,h,t,:]>) * v[b,h,t,:]      (no mask)
//
// Entry point: sd_flash_attention_f16 (signature below). Strides are in elements, not bytes, and may be
// anything; the fast (cp.async) copies need the unit-stride dimension of K (k_sj == 1) and of V
// (v_si == 1 or v_sj == 1) with the other stride and the base a multiple of 8 halves (16 bytes), which
// both common layouts meet: "split einsum" (q_si = 1, q_sj = sq; k_si = heads * d, k_sj = 1; v_si = 1,
// v_sj = sk; o_si = 1, o_sj = sq) and plain [B,H,S,d] (all *_sj = 1). Other strides take a slower
// element-wise path inside the key loop but give the same result.
//
// LAUNCH RULE (the Rust side, cuda_engine/flash_attention.rs, mirrors it):
//   grid  = (ceil(sq / SD_FA_BLOCK_Q), heads, batch)
//   block = (SD_FA_THREADS, 1, 1)
//   dynamic shared memory, in bytes, with dp = round_up(d, 16) and dvp = round_up(dv, 16):
//     shared_bytes(d, dv) = 384 * dp + 288 * min(dvp, SD_FA_DV_CHUNK) + 5120
//   = 2 bytes * [ Q tile 64 x (dp + 8)  +  2 stages x ( K tile 64 x (dp + 8)  +  V slot 72 x dvc + 512 ) ]
//   with dvc = min(dvp, SD_FA_DV_CHUNK) (the V slot holds vt[dvc][72] or vr[64][dvc + 8]). No static
//   shared memory.
//   Supported: 1 <= d <= SD_FA_MAX_D (256) and 1 <= dv <= SD_FA_MAX_D (256), d != dv allowed; any
//   sq >= 1, sk >= 1, heads >= 1, batch >= 1 (heads, batch <= 65535: grid limits). With anything
//   outside that the kernel returns without writing.
//   Examples: d = dv = 8 or 16: 15872 B; 32: 26624 B; 40: 37376 B; 64: 48128 B; 80: 58880 B;
//   96: 65024 B; 128: 77312 B; 160: 89600 B; 256: 126464 B (the largest).
//   More than 48 KB (49152 B) needs cudaFuncAttributeMaxDynamicSharedMemorySize
//   (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) raised to shared_bytes first: not for
//   d = dv <= 64 (SD 2's 64 included), yes for d = dv >= 80 (SD 1.x's 80 and 160). Every d <= 176
//   (any dv) stays within 95744 B < 99 KB; beyond that (d = dv = 192: 101888 B) it needs more than
//   99 KB, which sm_80 (163 KB) and sm_90 (227 KB) allow but sm_86/sm_89 (99 KB) do not.
//   Resources: 128 registers per thread (__launch_bounds__(SD_FA_THREADS, 4): 4 blocks per SM).
//
// Design (FlashAttention-2 forward): a block of 4 warps owns SD_FA_BLOCK_Q = 64 query rows (16 per
// warp) and walks the keys in tiles of SD_FA_BLOCK_K = 64, double-buffered: while tile it is used,
// tile it + 1 is copied global -> shared by cp.async (16-byte chunks; plain loads for layouts that
// do not allow them), one __syncthreads per tile. Each warp computes its 16 x 64 score tile
// S = Q K^T with mma.sync (fp16 in, fp32 accumulate, ldmatrix fragments), does the online softmax
// in registers (fp32 running max and sum, exp2 with scale * log2(e) folded into one FFMA), converts
// P to fp16 straight into the A fragments of the P V product (the C layout of two adjacent 16 x 8
// score tiles is the A layout of one 16 x 16 tile) and accumulates O += P V in fp32 registers,
// rescaled by exp2(m_old - m_new) per tile. At the end O is divided by the row sum, staged through
// shared memory as fp16 and written out coalesced (vectorised along whichever of o_si, o_sj is 1).
// The value dimension goes in passes of at most SD_FA_DV_CHUNK = 80 columns (dv <= 80: one pass;
// dv = 96..160: two; up to four for dv = 256), each pass recomputing the scores; this caps the O
// accumulator at 16 x 80 per warp and so the registers for every dv. Head dims are padded with
// zeros to a multiple of 16 in shared memory; keys past sk get p = 0 (neutral for the running max),
// query rows past sq are computed on zeros and not written.
// Shared-memory layouts: Q and K row-major [row][dp + 8]; V as vt[j][72] (keys contiguous) when
// v_si == 1, else vr[t][dvc + 8] read through ldmatrix.trans; the +8 pads keep ldmatrix free of bank
// conflicts.

#include <cuda_fp16.h>

#define SD_FA_BLOCK_Q 64
#define SD_FA_BLOCK_K 64
#define SD_FA_THREADS 128
#define SD_FA_MAX_D 256
#define SD_FA_DV_CHUNK 80

namespace sd_fa {

// Row pitch (halves) of the transposed V tile vt[j][t]: 64 keys + 8 halves of padding, so that the
// 8 rows that one ldmatrix phase reads fall into distinct 16-byte bank groups (72 / 8 = 9 is odd).
constexpr int VT_LD = SD_FA_BLOCK_K + 8;

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Four 8x8 b16 matrices from shared memory; lanes 8m..8m+7 give the row addresses of matrix m,
// lane L receives in r[m] row L/4, columns 2*(L%4) and 2*(L%4)+1 of matrix m.
__device__ __forceinline__ void ldsm_x4(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2,
                                        unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// The same, each matrix transposed: lane L receives rows 2*(L%4) and 2*(L%4)+1 of column L/4.
__device__ __forceinline__ void ldsm_x4_trans(unsigned addr, unsigned& r0, unsigned& r1, unsigned& r2,
                                              unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// c (16x8 fp32) += a (16x16 fp16, row-major) * b (16x8 fp16, column-major).
__device__ __forceinline__ void mma_16816(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                          unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two floats as one fp16x2 register: x in the low half (the lower column of an mma fragment).
__device__ __forceinline__ unsigned pack_half2(float x, float y) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(y), "f"(x));  // first source -> upper half
    return r;
}

__device__ __forceinline__ unsigned short half_bits(const __half* p) {
    return __half_as_ushort(*p);
}

__device__ __forceinline__ unsigned pack_u16(unsigned short lo, unsigned short hi) {
    return static_cast<unsigned>(lo) | (static_cast<unsigned>(hi) << 16);
}

__device__ __forceinline__ unsigned short u16_at(const uint4& v, int e) {
    const unsigned w = e < 2 ? v.x : e < 4 ? v.y : e < 6 ? v.z : v.w;
    return static_cast<unsigned short>((e & 1) ? (w >> 16) : (w & 0xffffu));
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// u / n for 0 <= u < 64 * n, n <= 256, from a float reciprocal (cheaper than an integer division):
// (u + 0.5) / n lies at least 0.5 / n >= 1/512 away from an integer, and the rounding error of the
// product (< 64 * 2^-23) is far smaller.
__device__ __forceinline__ int row_of(int u, float inv_n) {
    return __float2int_rz((static_cast<float>(u) + 0.5f) * inv_n);
}

// 16 bytes global -> shared without passing through registers (sm_80+); zero-filled when !valid.
__device__ __forceinline__ void cp_async16(__half* dst, const __half* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Copies one 64-row tile from global to shared memory, cooperatively (all SD_FA_THREADS threads).
// Element (r, c), 0 <= r < 64, 0 <= c < cpad (cpad a multiple of 8), is src[r * s_r + c * s_c] when
// r < nr and c < nc, else zero. Stored at dst[r * ld + c] (row-major) or dst[c * ld + r]
// (col_major). ld is a multiple of 8 and dst is 16-byte aligned. The thread mapping follows the
// source's unit stride so the global reads stay coalesced (16-byte vectors where aligned). Where the
// source's contiguous dimension is also the destination's, whole 16-byte chunks go by cp.async
// (complete only after cp_async_wait_all); everything else is stored synchronously. Either way the
// tile is ready for other threads after cp_async_wait_all() and a __syncthreads().
__device__ __forceinline__ void load_tile(__half* dst, int ld, bool col_major, const __half* src, long long s_r,
                                          long long s_c, int nr, int nc, int cpad) {
    const int tid = threadIdx.x;
    unsigned short* d16 = reinterpret_cast<unsigned short*>(dst);
    if (s_c == 1) {
        // Vectors of 8 along c; consecutive threads take consecutive column chunks of a row.
        const int cch = cpad >> 3;
        const float inv_cch = 1.f / static_cast<float>(cch);
        const bool vec = aligned16(src) && (s_r & 7) == 0;
        for (int u = tid; u < 64 * cch; u += SD_FA_THREADS) {
            const int r = row_of(u, inv_cch);
            const int c = (u - r * cch) << 3;
            const bool full = r < nr && c + 8 <= nc;
            const bool none = r >= nr || c >= nc;
            if (vec && !col_major && (full || none)) {
                cp_async16(dst + r * ld + c, full ? src + r * s_r + c : src, full);
                continue;
            }
            uint4 val = make_uint4(0u, 0u, 0u, 0u);
            if (!none) {
                const __half* p = src + r * s_r + c;
                if (vec && full) {
                    val = *reinterpret_cast<const uint4*>(p);
                } else {
                    unsigned short h[8];
#pragma unroll
                    for (int e = 0; e < 8; ++e) h[e] = (c + e < nc) ? half_bits(p + e) : (unsigned short)0;
                    val = make_uint4(pack_u16(h[0], h[1]), pack_u16(h[2], h[3]), pack_u16(h[4], h[5]),
                                     pack_u16(h[6], h[7]));
                }
            }
            if (!col_major) {
                *reinterpret_cast<uint4*>(dst + r * ld + c) = val;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) d16[(c + e) * ld + r] = u16_at(val, e);
            }
        }
    } else if (s_r == 1) {
        // Vectors of 8 along r; 8 consecutive threads cover the 64 rows of one column.
        const bool vec = aligned16(src) && (s_c & 7) == 0;
        for (int u = tid; u < 8 * cpad; u += SD_FA_THREADS) {
            const int c = u >> 3;
            const int r = (u & 7) << 3;
            const bool full = c < nc && r + 8 <= nr;
            const bool none = c >= nc || r >= nr;
            if (vec && col_major && (full || none)) {
                cp_async16(dst + c * ld + r, full ? src + c * s_c + r : src, full);
                continue;
            }
            uint4 val = make_uint4(0u, 0u, 0u, 0u);
            if (!none) {
                const __half* p = src + c * s_c + r;
                if (vec && full) {
                    val = *reinterpret_cast<const uint4*>(p);
                } else {
                    unsigned short h[8];
#pragma unroll
                    for (int e = 0; e < 8; ++e) h[e] = (r + e < nr) ? half_bits(p + e) : (unsigned short)0;
                    val = make_uint4(pack_u16(h[0], h[1]), pack_u16(h[2], h[3]), pack_u16(h[4], h[5]),
                                     pack_u16(h[6], h[7]));
                }
            }
            if (col_major) {
                *reinterpret_cast<uint4*>(dst + c * ld + r) = val;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) d16[(r + e) * ld + c] = u16_at(val, e);
            }
        }
    } else {
        // No unit stride: one element per thread, c fastest.
        for (int u = tid; u < 64 * cpad; u += SD_FA_THREADS) {
            const int r = u / cpad;
            const int c = u - r * cpad;
            const unsigned short h = (r < nr && c < nc) ? half_bits(src + r * s_r + c * s_c) : (unsigned short)0;
            d16[col_major ? c * ld + r : r * ld + c] = h;
        }
    }
}

// The general copy inside the key loop (layouts that copy_async below cannot take): one element per
// thread and step, the source's unit-stride dimension fastest; same result as load_tile.
__device__ __forceinline__ void load_tile_scalar(__half* dst, int ld, bool col_major, const __half* src,
                                                 long long s_r, long long s_c, int nr, int nc, int cpad) {
    unsigned short* d16 = reinterpret_cast<unsigned short*>(dst);
    const bool r_fast = s_r == 1 && s_c != 1;
    const float inv_cpad = 1.f / static_cast<float>(cpad);
    for (int u = threadIdx.x; u < 64 * cpad; u += SD_FA_THREADS) {
        int r, c;
        if (r_fast) {
            c = u >> 6;
            r = u & 63;
        } else {
            r = row_of(u, inv_cpad);
            c = u - r * cpad;
        }
        const unsigned short h = (r < nr && c < nc) ? half_bits(src + r * s_r + c * s_c) : (unsigned short)0;
        d16[col_major ? c * ld + r : r * ld + c] = h;
    }
}

// The fast copy, for a tile whose unit-stride ("inner") dimension is also contiguous in shared memory
// and whose other ("outer") stride keeps 16-byte alignment: each thread owns one 8-element inner
// chunk and walks the outer dimension with a fixed step, so a tile costs a few instructions per
// 16-byte cp.async. The plan (which chunk, which outer rows) is computed once per kernel.
struct CopyPlan {
    int ci;     // this thread's inner offset, a multiple of 8
    int o0;     // its first outer index
    int ostep;  // its outer step; the thread is idle when o0 >= ostep
};

// ie: inner extent of the tiles (a multiple of 8, at most 256).
__device__ __forceinline__ CopyPlan make_plan(int ie) {
    const int ich = ie >> 3;
    const int tid = threadIdx.x;
    CopyPlan p;
    p.ostep = SD_FA_THREADS / ich;
    p.o0 = tid / ich;
    p.ci = (tid - p.o0 * ich) << 3;
    return p;
}

// dst[o * ld + i] = src[o * so + i] for o < no and i < ni, else 0; for 0 <= o < oe and i over the
// plan's inner extent. src and so keep 16-byte alignment, dst and ld too.
__device__ __forceinline__ void copy_async(__half* dst, int ld, const __half* src, long long so, int oe, int no,
                                           int ni, const CopyPlan& p) {
    if (p.o0 >= p.ostep) return;
    const bool ifull = p.ci + 8 <= ni;
    const bool inone = p.ci >= ni;
    const __half* g = src + p.o0 * so + p.ci;
    __half* sm = dst + p.o0 * ld + p.ci;
    const long long gstep = p.ostep * so;
    const int sstep = p.ostep * ld;
    for (int o = p.o0; o < oe; o += p.ostep, g += gstep, sm += sstep) {
        const bool onone = o >= no;
        if (ifull || inone || onone) {
            const bool full = ifull && !onone;
            cp_async16(sm, full ? g : src, full);
        } else {
            // The last, partial inner chunk (ni not a multiple of 8): element loads, zero-filled.
            unsigned short h[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) h[e] = (p.ci + e < ni) ? half_bits(g + e) : (unsigned short)0;
            *reinterpret_cast<uint4*>(sm) =
                make_uint4(pack_u16(h[0], h[1]), pack_u16(h[2], h[3]), pack_u16(h[4], h[5]), pack_u16(h[6], h[7]));
        }
    }
}

// Writes a 64-row tile from shared memory (src[r * ld + c], row-major, 16-byte aligned, ld a
// multiple of 8) to global memory: dst[r * s_r + c * s_c] = src[r * ld + c] for r < nr, c < nc.
// cpad (a multiple of 8, >= nc) is the width of the shared tile.
__device__ __forceinline__ void store_tile(__half* dst, long long s_r, long long s_c, const __half* src, int ld,
                                           int nr, int nc, int cpad) {
    const int tid = threadIdx.x;
    const unsigned short* s16 = reinterpret_cast<const unsigned short*>(src);
    unsigned short* g16 = reinterpret_cast<unsigned short*>(dst);
    if (s_c == 1) {
        const int cch = cpad >> 3;
        const float inv_cch = 1.f / static_cast<float>(cch);
        const bool vec = aligned16(dst) && (s_r & 7) == 0;
        for (int u = tid; u < 64 * cch; u += SD_FA_THREADS) {
            const int r = row_of(u, inv_cch);
            const int c = (u - r * cch) << 3;
            if (r >= nr || c >= nc) continue;
            const uint4 val = *reinterpret_cast<const uint4*>(src + r * ld + c);
            unsigned short* p = g16 + r * s_r + c;
            if (vec && c + 8 <= nc) {
                *reinterpret_cast<uint4*>(p) = val;
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    if (c + e < nc) p[e] = u16_at(val, e);
            }
        }
    } else if (s_r == 1) {
        const bool vec = aligned16(dst) && (s_c & 7) == 0;
        for (int u = tid; u < 8 * cpad; u += SD_FA_THREADS) {
            const int c = u >> 3;
            const int r = (u & 7) << 3;
            if (c >= nc || r >= nr) continue;
            unsigned short h[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) h[e] = s16[(r + e) * ld + c];
            unsigned short* p = g16 + c * s_c + r;
            if (vec && r + 8 <= nr) {
                *reinterpret_cast<uint4*>(p) = make_uint4(pack_u16(h[0], h[1]), pack_u16(h[2], h[3]),
                                                          pack_u16(h[4], h[5]), pack_u16(h[6], h[7]));
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    if (r + e < nr) p[e] = h[e];
            }
        }
    } else {
        for (int u = tid; u < 64 * cpad; u += SD_FA_THREADS) {
            const int r = u / cpad;
            const int c = u - r * cpad;
            if (r < nr && c < nc) g16[r * s_r + c * s_c] = s16[r * ld + c];
        }
    }
}

// The whole block's work for one (query tile, head, batch), with C16 * 16 value columns per pass.
// Not inlined: each instantiation gets its own register allocation (the kernel's register count is the
// largest of them rather than that of one huge function) and NVRTC compiles markedly faster.
template <int C16>
__device__ __noinline__ void attend(const __half* __restrict__ q, const __half* __restrict__ k,
                                       const __half* __restrict__ v, __half* __restrict__ o, int sq, int sk,
                                       int d, int dv, int passes, float scale, long long q_sb, long long q_sh,
                                       long long q_si, long long q_sj, long long k_sb, long long k_sh,
                                       long long k_si, long long k_sj, long long v_sb, long long v_sh,
                                       long long v_si, long long v_sj, long long o_sb, long long o_sh,
                                       long long o_si, long long o_sj, __half* smem) {
    constexpr int DVC = C16 * 16;  // value columns per pass (padded)
    constexpr int NJ = 2 * C16;    // 16x8 output tiles per warp
    const float NEG_INF = __int_as_float(0xff800000);

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int tq = lane & 3;  // thread in its quad: columns 2*tq, 2*tq+1 of a fragment
    const int b = blockIdx.z;
    const int h = blockIdx.y;
    const int i0 = blockIdx.x * SD_FA_BLOCK_Q;
    const int nq = min(SD_FA_BLOCK_Q, sq - i0);

    const int dp = (d + 15) & ~15;
    const int ldq = dp + 8;  // row pitch (halves) of the Q and K tiles; ldq / 8 odd: no ldmatrix conflicts
    const int dk16 = dp >> 4;
    const int ldo = DVC + 8;
    // Shared memory: Q [64][ldq], then two stages of (K [64][ldq], V), V being vt [DVC][VT_LD] or
    // vr [64][DVC + 8] in a slot of VSLOT halves; the O staging [64][DVC + 8] reuses V slot 0.
    constexpr int VSLOT = DVC * VT_LD + 512;  // >= both V shapes; <= the host formula's slot
    __half* qs = smem;
    __half* ks0 = qs + SD_FA_BLOCK_Q * ldq;
    __half* vs0 = ks0 + SD_FA_BLOCK_K * ldq;

    const __half* qb = q + b * q_sb + h * q_sh + i0 * q_si;
    const __half* kb = k + b * k_sb + h * k_sh;
    const __half* vb = v + b * v_sb + h * v_sh;
    __half* ob = o + b * o_sb + h * o_sh + i0 * o_si;

    // Keys contiguous in v: keep V transposed (vt[j][t], plain ldmatrix); otherwise row-major
    // (vr[t][j], transposing ldmatrix). Either way the B fragment of P V comes out the same.
    const bool v_t_major = (v_si == 1);
    const int ldv = v_t_major ? VT_LD : ldo;

    // Per-lane ldmatrix addresses (bytes).
    // A fragment of Q (rows 16*warp.., k-step kk): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
    // (rows 0-7, k 8-15), (rows 8-15, k 8-15).
    const unsigned q_addr =
        smem_addr(qs + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * ldq + (lane >> 4) * 8);
    // B fragments of K^T for two key tiles of 8: matrices (keys 0-7, k 0-7), (keys 0-7, k 8-15),
    // (keys 8-15, k 0-7), (keys 8-15, k 8-15).
    const unsigned k_addr = smem_addr(ks0 + ((lane >> 4) * 8 + (lane & 7)) * ldq + ((lane >> 3) & 1) * 8);
    // B fragments of V for two value tiles of 8 (j) and one k-step of 16 keys: matrices
    // (j 0-7, t 0-7), (j 0-7, t 8-15), (j 8-15, t 0-7), (j 8-15, t 8-15).
    unsigned v_addr;
    unsigned v_kstep;  // bytes per 16 keys
    unsigned v_nstep;  // bytes per 16 value columns
    if (v_t_major) {
        v_addr = smem_addr(vs0 + ((lane >> 4) * 8 + (lane & 7)) * VT_LD + ((lane >> 3) & 1) * 8);
        v_kstep = 16 * 2;
        v_nstep = 16 * VT_LD * 2;
    } else {
        v_addr = smem_addr(vs0 + ((lane & 7) + ((lane >> 3) & 1) * 8) * ldo + (lane >> 4) * 8);
        v_kstep = 16 * ldo * 2;
        v_nstep = 16 * 2;
    }

    // Fast copies (copy_async) where the layout allows, load_tile_scalar otherwise.
    const bool k_fast = k_sj == 1 && (k_si & 7) == 0 && aligned16(kb);
    const bool v_fast = v_t_major ? ((v_sj & 7) == 0 && aligned16(vb)) : (v_sj == 1 && (v_si & 7) == 0 && aligned16(vb));
    const CopyPlan k_plan = make_plan(dp);
    const CopyPlan v_plan = make_plan(v_t_major ? SD_FA_BLOCK_K : DVC);

    const int stage_halves = SD_FA_BLOCK_K * ldq + VSLOT;  // stage 1 = stage 0 + this
    const unsigned stage_bytes = static_cast<unsigned>(stage_halves * 2);
    const float sl2 = scale * 1.4426950408889634f;  // scale * log2(e)
    const int ntiles = (sk + SD_FA_BLOCK_K - 1) / SD_FA_BLOCK_K;

    for (int pass = 0; pass < passes; ++pass) {
        const int j0 = pass * DVC;
        const int ncv = min(DVC, dv - j0);

        float acc[NJ][4];
#pragma unroll
        for (int nj = 0; nj < NJ; ++nj) acc[nj][0] = acc[nj][1] = acc[nj][2] = acc[nj][3] = 0.f;
        // Rows g = lane / 4 and g + 8 of the warp's 16: running max (log2 domain) and this thread's
        // share of the running sum (the quad's four shares are added at the end).
        float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;

        // Pipeline: tile it + 1 is copied (cp.async) into one stage while tile it is used from the
        // other. Iteration -1 only starts the copy of tile 0 (one copy site keeps the code small).
        if (pass == 0) load_tile(qs, ldq, false, qb, q_si, q_sj, nq, d, dp);
        for (int it = -1; it < ntiles; ++it) {
            if (it >= 0) {
                cp_async_wait_all();
                // Tile it is visible to all, and every warp is done with tile it - 1, whose stage the
                // copy of tile it + 1 below overwrites.
                __syncthreads();
            }
            if (it + 1 < ntiles) {
                const int t1 = (it + 1) * SD_FA_BLOCK_K;
                const int nk1 = min(SD_FA_BLOCK_K, sk - t1);
                const int so = (it & 1) ? 0 : stage_halves;  // stage (it + 1) & 1
                __half* kn = ks0 + so;
                __half* vn = vs0 + so;
                if (k_fast)
                    copy_async(kn, ldq, kb + t1 * k_si, k_si, SD_FA_BLOCK_K, nk1, d, k_plan);
                else
                    load_tile_scalar(kn, ldq, false, kb + t1 * k_si, k_si, k_sj, nk1, d, dp);
                if (v_fast && v_t_major)  // vt[j][t] <- v[t + t1][j + j0], keys contiguous
                    copy_async(vn, VT_LD, vb + t1 + j0 * v_sj, v_sj, DVC, ncv, nk1, v_plan);
                else if (v_fast)  // vr[t][j] <- v[t + t1][j + j0], values contiguous
                    copy_async(vn, ldo, vb + t1 * v_si + j0, v_si, SD_FA_BLOCK_K, nk1, ncv, v_plan);
                else
                    load_tile_scalar(vn, ldv, v_t_major, vb + t1 * v_si + j0 * v_sj, v_si, v_sj, nk1, ncv, DVC);
            }
            cp_async_commit();
            if (it < 0) continue;
            const int t0 = it * SD_FA_BLOCK_K;
            const int nk = min(SD_FA_BLOCK_K, sk - t0);
            const unsigned soff = (it & 1) ? stage_bytes : 0u;

            // S = Q K^T: 16 x 64 per warp, 8 tiles of 16 x 8.
            float s[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
            for (int kk = 0; kk < dk16; ++kk) {
                unsigned a0, a1, a2, a3;
                ldsm_x4(q_addr + kk * 32, a0, a1, a2, a3);
#pragma unroll
                for (int np = 0; np < 4; ++np) {
                    unsigned b0, b1, b2, b3;
                    ldsm_x4(k_addr + soff + np * 16 * ldq * 2 + kk * 32, b0, b1, b2, b3);
                    mma_16816(s[2 * np], a0, a1, a2, a3, b0, b1);
                    mma_16816(s[2 * np + 1], a0, a1, a2, a3, b2, b3);
                }
            }

            // Online softmax in the log2 domain, on the raw scores x: the scaled score is x * sl2, so
            // the tile's row max of it is sl2 * max(x) for sl2 >= 0 (sl2 * min(x) otherwise) and
            // p = exp2(x * sl2 - m) is one FFMA and one EX2. s[nt][0..1]: row g, keys 8*nt + 2*tq +
            // {0,1}; s[nt][2..3]: row g + 8, the same keys.
            const bool masked = nk < SD_FA_BLOCK_K;
            if (masked) {
                // Keys past sk: neutral for the max/min below, and p = 0 further down.
                const float neutral = sl2 >= 0.f ? NEG_INF : -NEG_INF;
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const int col = nt * 8 + tq * 2;
                    if (col >= nk) s[nt][0] = s[nt][2] = neutral;
                    if (col + 1 >= nk) s[nt][1] = s[nt][3] = neutral;
                }
            }
            float r0 = s[0][0], r1 = s[0][2];
            if (sl2 >= 0.f) {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    r0 = fmaxf(r0, fmaxf(s[nt][0], s[nt][1]));
                    r1 = fmaxf(r1, fmaxf(s[nt][2], s[nt][3]));
                }
                r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 1));
                r0 = fmaxf(r0, __shfl_xor_sync(0xffffffffu, r0, 2));
                r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 1));
                r1 = fmaxf(r1, __shfl_xor_sync(0xffffffffu, r1, 2));
            } else {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    r0 = fminf(r0, fminf(s[nt][0], s[nt][1]));
                    r1 = fminf(r1, fminf(s[nt][2], s[nt][3]));
                }
                r0 = fminf(r0, __shfl_xor_sync(0xffffffffu, r0, 1));
                r0 = fminf(r0, __shfl_xor_sync(0xffffffffu, r0, 2));
                r1 = fminf(r1, __shfl_xor_sync(0xffffffffu, r1, 1));
                r1 = fminf(r1, __shfl_xor_sync(0xffffffffu, r1, 2));
            }
            const float mx0 = fmaxf(m0, r0 * sl2);
            const float mx1 = fmaxf(m1, r1 * sl2);
            // Every tile holds at least one valid key, so the max is finite for finite inputs; the
            // guard only keeps -inf - -inf (NaN) out for infinite inputs.
            const float ms0 = (mx0 == NEG_INF) ? 0.f : mx0;
            const float ms1 = (mx1 == NEG_INF) ? 0.f : mx1;
            const float alpha0 = fast_exp2(m0 - ms0);  // 0 on the first tile (m = -inf)
            const float alpha1 = fast_exp2(m1 - ms1);
            m0 = mx0;
            m1 = mx1;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                s[nt][0] = fast_exp2(fmaf(s[nt][0], sl2, -ms0));
                s[nt][1] = fast_exp2(fmaf(s[nt][1], sl2, -ms0));
                s[nt][2] = fast_exp2(fmaf(s[nt][2], sl2, -ms1));
                s[nt][3] = fast_exp2(fmaf(s[nt][3], sl2, -ms1));
            }
            if (masked) {
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const int col = nt * 8 + tq * 2;
                    if (col >= nk) s[nt][0] = s[nt][2] = 0.f;
                    if (col + 1 >= nk) s[nt][1] = s[nt][3] = 0.f;
                }
            }
            float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                rs0 += s[nt][0] + s[nt][1];
                rs1 += s[nt][2] + s[nt][3];
            }
            l0 = l0 * alpha0 + rs0;
            l1 = l1 * alpha1 + rs1;
#pragma unroll
            for (int nj = 0; nj < NJ; ++nj) {
                acc[nj][0] *= alpha0;
                acc[nj][1] *= alpha0;
                acc[nj][2] *= alpha1;
                acc[nj][3] *= alpha1;
            }

            // O += P V. The A fragment of keys 16*kt..16*kt+15 is score tiles 2*kt and 2*kt+1 in fp16.
#pragma unroll
            for (int kt = 0; kt < 4; ++kt) {
                const unsigned a0 = pack_half2(s[2 * kt][0], s[2 * kt][1]);
                const unsigned a1 = pack_half2(s[2 * kt][2], s[2 * kt][3]);
                const unsigned a2 = pack_half2(s[2 * kt + 1][0], s[2 * kt + 1][1]);
                const unsigned a3 = pack_half2(s[2 * kt + 1][2], s[2 * kt + 1][3]);
#pragma unroll
                for (int np = 0; np < C16; ++np) {
                    unsigned b0, b1, b2, b3;
                    const unsigned addr = v_addr + soff + kt * v_kstep + np * v_nstep;
                    if (v_t_major) {
                        ldsm_x4(addr, b0, b1, b2, b3);
                    } else {
                        ldsm_x4_trans(addr, b0, b1, b2, b3);
                    }
                    mma_16816(acc[2 * np], a0, a1, a2, a3, b0, b1);
                    mma_16816(acc[2 * np + 1], a0, a1, a2, a3, b2, b3);
                }
            }
        }
        __syncthreads();  // every warp is done with the last tile: V slot 0 is free for the O staging

        // Normalise and stage O (fp16) in shared memory, then write it out coalesced.
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
        const float inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
        {
            const int row = warp * 16 + (lane >> 2);
            __half* os0 = vs0 + row * ldo + tq * 2;
            __half* os1 = os0 + 8 * ldo;
#pragma unroll
            for (int nj = 0; nj < NJ; ++nj) {
                *reinterpret_cast<__half2*>(os0 + nj * 8) = __floats2half2_rn(acc[nj][0] * inv0, acc[nj][1] * inv0);
                *reinterpret_cast<__half2*>(os1 + nj * 8) = __floats2half2_rn(acc[nj][2] * inv1, acc[nj][3] * inv1);
            }
        }
        __syncthreads();
        store_tile(ob + j0 * o_sj, o_si, o_sj, vs0, ldo, nq, ncv, DVC);
        if (pass + 1 < passes) __syncthreads();  // the staging area is the next pass's V stage 0
    }
}

}  // namespace sd_fa

extern "C" __global__ void __launch_bounds__(SD_FA_THREADS, 4)
    sd_flash_attention_f16(const __half* __restrict__ q, const __half* __restrict__ k, const __half* __restrict__ v,
                           __half* __restrict__ o, int heads, int sq, int sk, int d, int dv, float scale,
                           long long q_sb, long long q_sh, long long q_si, long long q_sj, long long k_sb,
                           long long k_sh, long long k_si, long long k_sj, long long v_sb, long long v_sh,
                           long long v_si, long long v_sj, long long o_sb, long long o_sh, long long o_si,
                           long long o_sj) {
    extern __shared__ __align__(16) unsigned char sd_fa_smem[];
    if (d < 1 || d > SD_FA_MAX_D || dv < 1 || dv > SD_FA_MAX_D || sq < 1 || sk < 1 || (int)blockIdx.y >= heads)
        return;
    __half* smem = reinterpret_cast<__half*>(sd_fa_smem);
    const int dv16 = (dv + 15) >> 4;
    const int passes = (dv16 * 16 + SD_FA_DV_CHUNK - 1) / SD_FA_DV_CHUNK;
    const int c16 = (dv16 + passes - 1) / passes;  // 16-column groups per pass, <= SD_FA_DV_CHUNK / 16
#define SD_FA_CASE(N)                                                                                      \
    case N:                                                                                                \
        if (N * 16 <= SD_FA_DV_CHUNK)                                                                      \
            sd_fa::attend<N>(q, k, v, o, sq, sk, d, dv, passes, scale, q_sb, q_sh, q_si, q_sj, k_sb, k_sh, k_si, \
                             k_sj, v_sb, v_sh, v_si, v_sj, o_sb, o_sh, o_si, o_sj, smem);                 \
        break;
    switch (c16) {
        SD_FA_CASE(1)
        SD_FA_CASE(2)
        SD_FA_CASE(3)
        SD_FA_CASE(4)
        SD_FA_CASE(5)
        SD_FA_CASE(6)
        SD_FA_CASE(7)
        SD_FA_CASE(8)
        default:
            break;
    }
#undef SD_FA_CASE
}
