//! Globally optimal 1-D k-means over weighted points, by dynamic programming.
//!
//! The points are the distinct values of a tensor weighted by how often each occurs, as
//! coremltools clusters fp16 weights. Row `k` of the table holds the least within-cluster sum of
//! squares for the first `j` points in `k` clusters; each row is filled by divide and conquer,
//! which is exact because the optimal split point is monotone in `j`. Cost: O(k · n · log n).

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
        let w = self.w[b] - self.w[a];
        if w <= 0.0 {
            return 0.0;
        }
        let s1 = self.s1[b] - self.s1[a];
        ((self.s2[b] - self.s2[a]) - s1 * s1 / w).max(0.0)
    }

    fn mean(&self, a: usize, b: usize, origin: f64) -> f64 {
        let w = self.w[b] - self.w[a];
        origin + (self.s1[b] - self.s1[a]) / w
    }
}

/// Fills `cur[j − base]` (best cost of the first `j` points in one more cluster than `prev`)
/// and `split[j − base]` for `j` in `[lo, hi]`, knowing the optimal split for these `j` lies
/// in `[opt_lo, opt_hi]`.
#[allow(clippy::too_many_arguments)]
fn fill(
    p: &Prefix,
    prev: &[f64],
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
    let mid = (lo + hi) / 2;
    let (mut best, mut best_i) = (f64::INFINITY, opt_lo);
    for (i, &before) in prev
        .iter()
        .enumerate()
        .take(opt_hi.min(mid - 1) + 1)
        .skip(opt_lo)
    {
        let c = before + p.cost(i, mid);
        if c < best {
            best = c;
            best_i = i;
        }
    }
    // The halves below and above `mid` write disjoint parts of `cur` and `split`, so large
    // ranges fill them on two threads.
    let (cur_lo, cur_rest) = cur.split_at_mut(mid - base);
    let (split_lo, split_rest) = split.split_at_mut(mid - base);
    cur_rest[0] = best;
    split_rest[0] = best_i;
    let (cur_hi, split_hi) = (&mut cur_rest[1..], &mut split_rest[1..]);
    let below = |cur: &mut [f64], split: &mut [usize]| {
        if mid > lo {
            fill(p, prev, cur, split, base, lo, mid - 1, opt_lo, best_i);
        }
    };
    let above = |cur: &mut [f64], split: &mut [usize]| {
        fill(p, prev, cur, split, mid + 1, mid + 1, hi, best_i, opt_hi);
    };
    if hi - lo > PARALLEL_RANGE {
        rayon::join(|| below(cur_lo, split_lo), || above(cur_hi, split_hi));
    } else {
        below(cur_lo, split_lo);
        above(cur_hi, split_hi);
    }
}

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
        fill(&p, &prev, &mut cur, &mut split, 0, c + 1, n, c, n - 1);
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
        let p = Prefix::new(&pts, &w);
        let n = pts.len();
        for k in [2, 3] {
            // best[c][j]: the first j points in c + 1 clusters, by plain O(k·n²) search.
            let mut prev: Vec<f64> = (0..=n).map(|j| p.cost(0, j)).collect();
            for c in 1..k {
                let mut cur = vec![f64::INFINITY; n + 1];
                for (j, best) in cur.iter_mut().enumerate().skip(c + 1) {
                    *best = (c..j)
                        .map(|i| prev[i] + p.cost(i, j))
                        .fold(f64::INFINITY, f64::min);
                }
                prev = cur;
            }
            let got = optimal_kmeans_1d(&pts, &w, k).sse;
            assert!(
                (got - prev[n]).abs() <= 1e-9 * (1.0 + prev[n]),
                "k={k}: {got} vs {}",
                prev[n]
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

    #[test]
    fn fewer_points_than_clusters() {
        let c = optimal_kmeans_1d(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0], 256);
        assert_eq!(c.centroids, [1.0, 2.0, 3.0]);
        assert_eq!(c.sse, 0.0);
    }
}
