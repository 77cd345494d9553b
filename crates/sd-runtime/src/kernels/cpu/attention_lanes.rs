//! Unmasked attention with the query rows across AVX-512 lanes.
//!
//! A task takes [`ROWS`] query rows of one batch entry. It packs them transposed (scaled),
//! computes the transposed scores Sᵀ [keys, ROWS] with a register-tiled kernel (each key's
//! elements broadcast against two vectors of query rows, 12 keys at a time: 24
//! accumulators), so that every query row's maximum, exponentials and sum are plain
//! vertical vector operations, then accumulates Oᵀ = Vᵀ·P over all keys in registers, a
//! few value columns per pass. Heads with a small width (SD's 40 and 64) keep both kernels
//! at the FMA units' rate, where a general GEMM with an inner dimension of 40 runs at half
//! of it.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::gemm::{MatMut, MatRef};
use super::simd;

/// Calls the const-generic kernel `$f::<W>(args)` for the runtime width `$n` among the listed
/// ones (`$n = 0` does nothing).
macro_rules! by_width {
    ($n:expr, $f:ident $args:tt, $($w:literal)*) => {
        match $n {
            $($w => $f::<$w> $args,)*
            _ => {}
        }
    };
}

/// Query rows per task: two vectors of 16 lanes.
pub const ROWS: usize = 32;
/// Keys per step of the score kernel.
const KEYS: usize = 12;
/// Most value columns per pass of the output kernel.
const COLS: usize = 12;

/// Whether this CPU runs the kernel (AVX-512F and FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One task's operands: `rows` (≤ [`ROWS`]) query rows [rows, d], keys [sk, d], values
/// [sk, dv], all with any strides, and the destination rows [rows, dv].
#[derive(Clone, Copy)]
pub struct Block {
    pub q: MatRef,
    pub k: MatRef,
    pub v: MatRef,
    pub out: MatMut,
    pub rows: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    pub scale: f32,
}

/// Scratch of one thread: transposed queries [d, ROWS] and scores [sk, ROWS].
#[derive(Default)]
pub struct Scratch {
    qt: Vec<f32>,
    st: Vec<f32>,
}

/// Runs one block.
///
/// # Safety
/// [`available`] is true; the operands hold the elements their shapes and strides name, and
/// the destination rows are this caller's alone.
pub unsafe fn run(b: &Block, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as the caller promises.
    unsafe {
        block(b, scratch)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (b, scratch);
        unreachable!("attention_lanes::run without AVX-512");
    }
}

/// Sᵀ rows ← e^(s − max) per lane (query row); returns the per-lane sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn exponentials(st: &mut [f32], mx: &[f32; ROWS]) -> [f32; ROWS] {
    let mut shift = *mx;
    for m in &mut shift {
        if *m == f32::NEG_INFINITY {
            *m = 0.0;
        }
    }
    let mut sums = [0.0f32; ROWS];
    for row in st.chunks_exact_mut(ROWS) {
        for i in 0..ROWS {
            row[i] = simd::exp_fused(row[i] - shift[i]);
            sums[i] += row[i];
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn block(b: &Block, s: &mut Scratch) {
    let Block {
        q,
        k,
        v,
        out,
        rows,
        sk,
        d,
        dv,
        scale,
    } = *b;
    s.qt.clear();
    s.qt.resize(d * ROWS, 0.0);
    for r in 0..rows {
        for c in 0..d {
            // SAFETY: element (r, c) of the query rows.
            s.qt[c * ROWS + r] =
                unsafe { *q.ptr.offset(r as isize * q.rs + c as isize * q.cs) } * scale;
        }
    }
    s.st.resize(sk * ROWS, 0.0);
    let mut mx = [_mm512_set1_ps(f32::NEG_INFINITY); 2];
    let mut j = 0;
    while j + KEYS <= sk {
        // SAFETY: keys j..j + KEYS exist; st holds sk·ROWS scores.
        unsafe { scores::<KEYS>(&s.qt, k, j, d, &mut s.st, &mut mx) };
        j += KEYS;
    }
    // SAFETY: as above, for the last keys.
    unsafe {
        by_width!(sk - j, scores(&s.qt, k, j, d, &mut s.st, &mut mx), 1 2 3 4 5 6 7 8 9 10 11)
    }
    let mut m = [0.0f32; ROWS];
    // SAFETY: m holds two vectors.
    unsafe {
        _mm512_storeu_ps(m.as_mut_ptr(), mx[0]);
        _mm512_storeu_ps(m.as_mut_ptr().add(16), mx[1]);
    }
    let sums = exponentials(&mut s.st, &m);
    let mut inv = [0.0f32; ROWS];
    for (i, z) in inv.iter_mut().zip(sums) {
        *i = 1.0 / z;
    }
    let passes = dv.div_ceil(COLS);
    let mut c0 = 0;
    for p in 0..passes {
        let w = (dv - c0).div_ceil(passes - p);
        // SAFETY: value columns c0..c0 + w exist, and the destination rows are ours.
        unsafe {
            by_width!(w, values(&s.st, v, sk, c0, out, rows, &inv), 1 2 3 4 5 6 7 8 9 10 11 12)
        }
        c0 += w;
    }
}

/// Sᵀ[j + i] = K[j + i]·Qᵀ for `J` keys, and the running per-lane maximum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn scores<const J: usize>(
    qt: &[f32],
    k: MatRef,
    j: usize,
    d: usize,
    st: &mut [f32],
    mx: &mut [__m512; 2],
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; J];
    let kp = |i: usize, c: usize| {
        k.ptr
            .wrapping_offset((j + i) as isize * k.rs + c as isize * k.cs)
    };
    for c in 0..d {
        // SAFETY: qt holds d·ROWS elements; key elements exist as the caller promises.
        unsafe {
            let q0 = _mm512_loadu_ps(qt.as_ptr().add(c * ROWS));
            let q1 = _mm512_loadu_ps(qt.as_ptr().add(c * ROWS + 16));
            for (i, a) in acc.iter_mut().enumerate() {
                let kb = _mm512_set1_ps(*kp(i, c));
                a[0] = _mm512_fmadd_ps(kb, q0, a[0]);
                a[1] = _mm512_fmadd_ps(kb, q1, a[1]);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let row = &mut st[(j + i) * ROWS..][..ROWS];
        // SAFETY: row holds two vectors.
        unsafe {
            _mm512_storeu_ps(row.as_mut_ptr(), a[0]);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), a[1]);
        }
        mx[0] = _mm512_max_ps(mx[0], a[0]);
        mx[1] = _mm512_max_ps(mx[1], a[1]);
    }
}

/// out[r, c0 + c] = Σ_j P[j, r]·V[j, c0 + c] / sum[r] for `W` value columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn values<const W: usize>(
    st: &[f32],
    v: MatRef,
    sk: usize,
    c0: usize,
    out: MatMut,
    rows: usize,
    inv: &[f32; ROWS],
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; W];
    for j in 0..sk {
        // SAFETY: st holds sk·ROWS elements; value elements exist as the caller promises.
        unsafe {
            let p0 = _mm512_loadu_ps(st.as_ptr().add(j * ROWS));
            let p1 = _mm512_loadu_ps(st.as_ptr().add(j * ROWS + 16));
            let vp = v.ptr.offset(j as isize * v.rs + c0 as isize * v.cs);
            for (c, a) in acc.iter_mut().enumerate() {
                let vb = _mm512_set1_ps(*vp.offset(c as isize * v.cs));
                a[0] = _mm512_fmadd_ps(vb, p0, a[0]);
                a[1] = _mm512_fmadd_ps(vb, p1, a[1]);
            }
        }
    }
    let mut col = [0.0f32; ROWS];
    for (c, a) in acc.iter().enumerate() {
        // SAFETY: col holds two vectors; (r, c0 + c) is a destination element for r < rows.
        unsafe {
            _mm512_storeu_ps(col.as_mut_ptr(), a[0]);
            _mm512_storeu_ps(col.as_mut_ptr().add(16), a[1]);
            for r in 0..rows {
                *out.ptr
                    .offset(r as isize * out.rs + (c0 + c) as isize * out.cs) = col[r] * inv[r];
            }
        }
    }
}
