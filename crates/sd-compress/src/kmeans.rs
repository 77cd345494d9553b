//! Globally optimal 1-D k-means over weighted points, by dynamic programming.
//!
//! The points are the distinct values of a tensor weighted by how often each occurs, as
//! coremltools clusters fp16 weights. Row `k` of the table holds the least within-cluster sum of
//! squares for the first `j` points in `k` clusters; each row is filled by divide and conquer,
//! which is exact because the optimal split point is monotone in `j` — and, row to row, never
//! moves left (the last cluster only shrinks as clusters are added), which bounds each search
//! from below. Each search is a vectorized scan (AVX2 / AVX-512 when the CPU has them) and
//! small blocks are scanned without recursion. Cost: O(k · n · log n).

/// The clustering of sorted weighted points.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// Cluster means, ascending.
    pub centroids: Vec<f64>,
    /// For each input point, the index of its cluster.
    pub assignment: Vec<usize>,
    /// Weighted within-cluster sum of squared distances.
    pub sse: f64,
}

/// Prefix sums that give any segment's weighted sum of squares in O(1).
struct Prefix {
    w: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl Prefix {
    fn new(points: &[f64], weights: &[f64]) -> Self {
        let n = points.len();
        let (mut w, mut s1, mut s2) = (vec![0.0; n + 1], vec![0.0; n + 1], vec![0.0; n + 1]);
        for i in 0..n {
            // Centre on the first point to limit cancellation in s2 − s1²/w.
            let x = points[i] - points[0];
            w[i + 1] = w[i] + weights[i];
            s1[i + 1] = s1[i] + weights[i] * x;
            s2[i + 1] = s2[i] + weights[i] * x * x;
        }
        Prefix { w, s1, s2 }
    }

    /// Sum of squares of points `[a, b)` around their mean.
    fn cost(&self, a: usize, b: usize) -> f64 {
        if self.w[b] - self.w[a] <= 0.0 {
            return 0.0;
        }
        segment_cost(
            [self.w[a], self.s1[a], self.s2[a]],
            [self.w[b], self.s1[b], self.s2[b]],
        )
    }

    fn mean(&self, a: usize, b: usize, origin: f64) -> f64 {
        let w = self.w[b] - self.w[a];
        origin + (self.s1[b] - self.s1[a]) / w
    }
}

/// The sum of squares around their mean of the points between two prefix positions, given
/// each position's (weight, sum, sum of squares) prefix; the segment must have weight.
#[inline(always)]
fn segment_cost(start: [f64; 3], end: [f64; 3]) -> f64 {
    let s1 = end[1] - start[1];
    ((end[2] - start[2]) - s1 * s1 / (end[0] - start[0])).max(0.0)
}

/// The least `prev[i] + cost(i, j)` over `i` in `lo..=hi` (all below `j`) and the first `i`
/// that reaches it, in an AVX-512 or AVX2 copy when the CPU has one (detected at run time).
/// Every copy computes each candidate with the same operations, so all give the same answer.
fn best_split(p: &Prefix, prev: &[f64], j: usize, lo: usize, hi: usize) -> (f64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(p: &Prefix, prev: &[f64], j: usize, lo: usize, hi: usize) -> (f64, usize) {
            best_split_lanes(p, prev, j, lo, hi)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(p: &Prefix, prev: &[f64], j: usize, lo: usize, hi: usize) -> (f64, usize) {
            best_split_lanes(p, prev, j, lo, hi)
        }
        if hi >= lo + LANES {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature `avx512` was compiled for.
                return unsafe { avx512(p, prev, j, lo, hi) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the feature `avx2` was compiled for.
                return unsafe { avx2(p, prev, j, lo, hi) };
            }
        }
    }
    best_split_lanes(p, prev, j, lo, hi)
}

/// Independent minima kept by [`best_split_lanes`], so that LLVM vectorizes the search.
const LANES: usize = 8;

/// [`best_split`]'s search: `LANES` running minima (each keeps its first index), then the
/// least of them, ties to the smaller index — the first minimum of the plain scan.
#[inline(always)]
fn best_split_lanes(p: &Prefix, prev: &[f64], j: usize, lo: usize, hi: usize) -> (f64, usize) {
    if hi < lo {
        return (f64::INFINITY, lo);
    }
    let end = [p.w[j], p.s1[j], p.s2[j]];
    let mut best = [f64::INFINITY; LANES];
    let mut arg = [lo as u64; LANES];
    let count = hi + 1 - lo;
    let full = lo + count / LANES * LANES;
    let (pv, w, s1, s2) = (
        &prev[lo..full],
        &p.w[lo..full],
        &p.s1[lo..full],
        &p.s2[lo..full],
    );
    for c in 0..count / LANES {
        for l in 0..LANES {
            let k = c * LANES + l;
            let v = pv[k] + segment_cost([w[k], s1[k], s2[k]], end);
            let better = v < best[l];
            best[l] = if better { v } else { best[l] };
            arg[l] = if better { (lo + k) as u64 } else { arg[l] };
        }
    }
    let (mut b, mut bi) = (f64::INFINITY, lo);
    for l in 0..LANES {
        if best[l] < b || (best[l] == b && (arg[l] as usize) < bi) {
            b = best[l];
            bi = arg[l] as usize;
        }
    }
    if full <= hi {
        let (tail, ti) = best_split_scalar(p, prev, j, full, hi);
        if tail < b {
            (b, bi) = (tail, ti);
        }
    }
    (b, bi)
}

/// [`best_split`]'s search one candidate at a time (the same candidates, the same first
/// minimum), for short windows.
#[inline(always)]
fn best_split_scalar(p: &Prefix, prev: &[f64], j: usize, lo: usize, hi: usize) -> (f64, usize) {
    let end = [p.w[j], p.s1[j], p.s2[j]];
    let (mut b, mut bi) = (f64::INFINITY, lo);
    for (i, &before) in prev.iter().enumerate().take(hi + 1).skip(lo) {
        let v = before + segment_cost([p.w[i], p.s1[i], p.s2[i]], end);
        if v < b {
            b = v;
            bi = i;
        }
    }
    (b, bi)
}

/// What filling one row of the table reads: the prefix sums and the previous row (one
/// cluster fewer) with its splits.
struct Row<'a> {
    p: &'a Prefix,
    prev: &'a [f64],
    prev_split: &'a [usize],
}

/// Fills `cur[j − base]` (best cost of the first `j` points in one more cluster than `prev`)
/// and `split[j − base]` for `j` in `[lo, hi]`, knowing the optimal split for these `j` lies
/// in `[opt_lo, opt_hi]` — and, with one cluster more than the previous row, at or after that
/// row's split for the same `j` (the last cluster only shrinks as clusters are added).
#[allow(clippy::too_many_arguments)]
fn fill(
    row: &Row<'_>,
    cur: &mut [f64],
    split: &mut [usize],
    base: usize,
    lo: usize,
    hi: usize,
    opt_lo: usize,
    opt_hi: usize,
) {
    if lo > hi {
        return;
    }
    if (hi - lo + 1) * (opt_hi + 1 - opt_lo) <= LEAF_WORK {
        let block = Block {
            base,
            lo,
            hi,
            opt_lo,
            opt_hi,
        };
        leaf(row, cur, split, block);
        return;
    }
    let mid = (lo + hi) / 2;
    let from = opt_lo.max(row.prev_split[mid]);
    let (best, best_i) = best_split(row.p, row.prev, mid, from, opt_hi.min(mid - 1));
    // The halves below and above `mid` write disjoint parts of `cur` and `split`, so large
    // ranges fill them on two threads.
    let (cur_lo, cur_rest) = cur.split_at_mut(mid - base);
    let (split_lo, split_rest) = split.split_at_mut(mid - base);
    cur_rest[0] = best;
    split_rest[0] = best_i;
    let (cur_hi, split_hi) = (&mut cur_rest[1..], &mut split_rest[1..]);
    let below = |cur: &mut [f64], split: &mut [usize]| {
        if mid > lo {
            fill(row, cur, split, base, lo, mid - 1, opt_lo, best_i);
        }
    };
    let above = |cur: &mut [f64], split: &mut [usize]| {
        fill(row, cur, split, mid + 1, mid + 1, hi, best_i, opt_hi);
    };
    if hi - lo > PARALLEL_RANGE {
        rayon::join(|| below(cur_lo, split_lo), || above(cur_hi, split_hi));
    } else {
        below(cur_lo, split_lo);
        above(cur_hi, split_hi);
    }
}

/// The `j` range `[lo, hi]` of a small block of [`fill`], the range `[opt_lo, opt_hi]` its
/// splits lie in, and the `j` of `cur[0]`.
#[derive(Clone, Copy)]
struct Block {
    base: usize,
    lo: usize,
    hi: usize,
    opt_lo: usize,
    opt_hi: usize,
}

/// A small block of [`fill`]: each `j`'s window scanned directly (the split is monotone in
/// `j`), in an AVX-512 or AVX2 copy when the CPU has one, as [`best_split`] is.
fn leaf(row: &Row<'_>, cur: &mut [f64], split: &mut [usize], b: Block) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(row: &Row<'_>, cur: &mut [f64], split: &mut [usize], b: Block) {
            leaf_scan(row, cur, split, b)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(row: &Row<'_>, cur: &mut [f64], split: &mut [usize], b: Block) {
            leaf_scan(row, cur, split, b)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature `avx512` was compiled for.
            return unsafe { avx512(row, cur, split, b) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has the feature `avx2` was compiled for.
            return unsafe { avx2(row, cur, split, b) };
        }
    }
    leaf_scan(row, cur, split, b)
}

#[inline(always)]
fn leaf_scan(row: &Row<'_>, cur: &mut [f64], split: &mut [usize], b: Block) {
    let mut from = b.opt_lo;
    for j in b.lo..=b.hi {
        let (lo, hi) = (from.max(row.prev_split[j]), b.opt_hi.min(j - 1));
        // Most windows here are a few candidates long: a plain scan, without the lanes.
        let (best, i) = if hi < lo + LANES {
            best_split_scalar(row.p, row.prev, j, lo, hi)
        } else {
            best_split_lanes(row.p, row.prev, j, lo, hi)
        };
        cur[j - b.base] = best;
        split[j - b.base] = i;
        from = i;
    }
}

/// Blocks whose points × candidate splits are at most this are scanned without recursion.
const LEAF_WORK: usize = 64;

/// Ranges of more points than this are filled on two threads.
const PARALLEL_RANGE: usize = 4096;

/// Clusters `points` (strictly ascending, finite) with `weights` (> 0) into at most `k`
/// clusters with the least weighted sum of squares. Returns `min(k, n)` clusters.
pub fn optimal_kmeans_1d(points: &[f64], weights: &[f64], k: usize) -> Clusters {
    let n = points.len();
    assert_eq!(n, weights.len(), "one weight per point");
    if n == 0 || k == 0 {
        return Clusters {
            centroids: Vec::new(),
            assignment: vec![0; n],
            sse: 0.0,
        };
    }
    let k = k.min(n);
    let p = Prefix::new(points, weights);
    // splits[c][j]: start of the last cluster when the first j points form c + 1 clusters.
    let mut splits: Vec<Vec<usize>> = Vec::with_capacity(k);
    let mut prev: Vec<f64> = (0..=n).map(|j| p.cost(0, j)).collect();
    splits.push(vec![0; n + 1]);
    for c in 1..k {
        let mut cur = vec![f64::INFINITY; n + 1];
        let mut split = vec![0; n + 1];
        // With c + 1 clusters, j ≥ c + 1 points are needed; split i ≥ c.
        let row = Row {
            p: &p,
            prev: &prev,
            prev_split: &splits[c - 1],
        };
        if c + 1 == k {
            // The last row is read only at j = n (the whole input).
            let (b, i) = best_split(&p, &prev, n, c.max(splits[c - 1][n]), n - 1);
            cur[n] = b;
            split[n] = i;
        } else {
            fill(&row, &mut cur, &mut split, 0, c + 1, n, c, n - 1);
        }
        prev = cur;
        splits.push(split);
    }
    let sse = prev[n];
    let mut bounds = vec![n];
    let mut j = n;
    for c in (1..k).rev() {
        j = splits[c][j];
        bounds.push(j);
    }
    bounds.push(0);
    bounds.reverse();
    let mut centroids = Vec::with_capacity(k);
    let mut assignment = vec![0; n];
    for c in 0..k {
        let (a, b) = (bounds[c], bounds[c + 1]);
        centroids.push(p.mean(a, b, points[0]));
        assignment[a..b].fill(c);
    }
    Clusters {
        centroids,
        assignment,
        sse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive search over all ways to cut `n` sorted points into `k` contiguous groups.
    fn brute_force(points: &[f64], weights: &[f64], k: usize) -> f64 {
        let p = Prefix::new(points, weights);
        fn go(p: &Prefix, start: usize, n: usize, k: usize) -> f64 {
            if k == 1 {
                return p.cost(start, n);
            }
            (start + 1..=n - (k - 1))
                .map(|m| p.cost(start, m) + go(p, m, n, k - 1))
                .fold(f64::INFINITY, f64::min)
        }
        go(&p, 0, points.len(), k.min(points.len()))
    }

    /// The least SSE of all `n` points in 1 ..= `k_max` clusters (index k − 1), by the plain
    /// O(k · n²) dynamic program.
    fn quadratic_dp(points: &[f64], weights: &[f64], k_max: usize) -> Vec<f64> {
        let n = points.len();
        let p = Prefix::new(points, weights);
        let mut prev: Vec<f64> = (0..=n).map(|j| p.cost(0, j)).collect();
        let mut sse = vec![prev[n]];
        for c in 1..k_max.min(n) {
            let mut cur = vec![f64::INFINITY; n + 1];
            for (j, best) in cur.iter_mut().enumerate().skip(c + 1) {
                *best = (c..j)
                    .map(|i| prev[i] + p.cost(i, j))
                    .fold(f64::INFINITY, f64::min);
            }
            prev = cur;
            sse.push(prev[n]);
        }
        sse
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / (1u64 << 53) as f64
    }

    #[test]
    fn large_inputs_split_across_threads_match_the_quadratic_dynamic_program() {
        let mut seed = 3;
        let n = 5000;
        let mut pts: Vec<f64> = (0..n).map(|_| lcg(&mut seed) * 4.0 - 2.0).collect();
        pts.sort_by(f64::total_cmp);
        pts.dedup();
        let w: Vec<f64> = pts
            .iter()
            .map(|_| 1.0 + (lcg(&mut seed) * 3.0).floor())
            .collect();
        let want = quadratic_dp(&pts, &w, 3);
        for k in [2, 3] {
            let got = optimal_kmeans_1d(&pts, &w, k).sse;
            let want = want[k - 1];
            assert!(
                (got - want).abs() <= 1e-9 * (1.0 + want),
                "k={k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn matches_brute_force_on_random_inputs() {
        let mut seed = 7;
        for n in [1, 2, 5, 9, 13] {
            for k in 1..=6 {
                let mut pts: Vec<f64> = (0..n).map(|_| lcg(&mut seed) * 10.0 - 5.0).collect();
                pts.sort_by(f64::total_cmp);
                pts.dedup();
                let w: Vec<f64> = pts
                    .iter()
                    .map(|_| 1.0 + (lcg(&mut seed) * 5.0).floor())
                    .collect();
                let got = optimal_kmeans_1d(&pts, &w, k);
                let want = brute_force(&pts, &w, k);
                assert!(
                    (got.sse - want).abs() <= 1e-9 * (1.0 + want),
                    "n={n} k={k}: {} vs {want}",
                    got.sse
                );
                // The reported SSE is the SSE of the reported assignment.
                let direct: f64 = pts
                    .iter()
                    .zip(&w)
                    .zip(&got.assignment)
                    .map(|((x, w), &c)| w * (x - got.centroids[c]).powi(2))
                    .sum();
                assert!((direct - got.sse).abs() <= 1e-9 * (1.0 + direct));
                assert!(got.centroids.windows(2).all(|c| c[0] < c[1]));
            }
        }
    }

    /// Evenly spaced points of equal weight make many splits tie: the bounds taken from the
    /// previous row and from neighbouring `j` must still leave an optimal split in range.
    #[test]
    fn ties_on_a_uniform_grid_match_the_quadratic_dynamic_program() {
        for n in [7usize, 64, 301] {
            let pts: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let mut seed = n as u64;
            for uniform in [true, false] {
                let w: Vec<f64> = (0..n)
                    .map(|_| {
                        if uniform {
                            1.0
                        } else {
                            1.0 + (lcg(&mut seed) * 2.0).floor()
                        }
                    })
                    .collect();
                let want = quadratic_dp(&pts, &w, 12);
                for k in 2..=12.min(n) {
                    let got = optimal_kmeans_1d(&pts, &w, k).sse;
                    let want = want[k - 1];
                    assert!(
                        (got - want).abs() <= 1e-9 * (1.0 + want),
                        "n={n} k={k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn fewer_points_than_clusters() {
        let c = optimal_kmeans_1d(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0], 256);
        assert_eq!(c.centroids, [1.0, 2.0, 3.0]);
        assert_eq!(c.sse, 0.0);
    }
}
