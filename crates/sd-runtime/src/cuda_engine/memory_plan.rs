//! The static memory plan: every intermediate buffer of a prediction gets a fixed offset in
//! one arena, chosen once at load from the buffers' sizes and lifetimes, so a prediction
//! allocates nothing and a captured CUDA graph can replay the same addresses.
//!
//! Placement is greedy by size (largest first, each at the lowest offset that overlaps no
//! buffer placed before it and alive at the same time), the rule TensorFlow Lite's arena
//! planner uses; it is within a few percent of the peak live size on convolutional networks.

/// Every offset is a multiple of this many bytes (cuBLAS and cuDNN want 256-byte alignment
/// for their fastest kernels).
pub const ALIGN: usize = 256;

/// One buffer to place: its size and the steps it is alive over (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Size in bytes.
    pub bytes: usize,
    /// First step that writes it.
    pub first: usize,
    /// Last step that reads it.
    pub last: usize,
}

impl Lifetime {
    fn overlaps_in_time(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// The offsets of a plan and the arena size they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Byte offset of each buffer, in the order given to [`plan`].
    pub offsets: Vec<usize>,
    /// Arena size in bytes.
    pub total: usize,
}

fn aligned(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `buffers` in one arena; two buffers alive at the same step never share a byte.
pub fn plan(buffers: &[Lifetime]) -> MemoryPlan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| {
        buffers[b]
            .bytes
            .cmp(&buffers[a].bytes)
            .then(buffers[a].first.cmp(&buffers[b].first))
    });
    let mut offsets = vec![0usize; buffers.len()];
    // (offset, aligned size, index) of buffers placed so far, kept sorted by offset.
    let mut placed: Vec<(usize, usize, usize)> = Vec::new();
    let mut total = 0usize;
    for &i in &order {
        let size = aligned(buffers[i].bytes.max(1));
        let mut at = 0usize;
        for &(off, len, j) in &placed {
            if !buffers[i].overlaps_in_time(&buffers[j]) {
                continue;
            }
            if at + size <= off {
                break;
            }
            at = at.max(off + len);
        }
        offsets[i] = at;
        total = total.max(at + size);
        let pos = placed.partition_point(|&(off, _, _)| off <= at);
        placed.insert(pos, (at, size, i));
    }
    MemoryPlan { offsets, total }
}

/// Checks `p` against `buffers`: every offset aligned, inside the arena, and no two buffers
/// alive at one step overlapping. Quadratic: for tests and translation checks.
pub fn check(buffers: &[Lifetime], p: &MemoryPlan) -> Result<(), String> {
    if p.offsets.len() != buffers.len() {
        return Err(format!(
            "{} offsets for {} buffers",
            p.offsets.len(),
            buffers.len()
        ));
    }
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| buffers[i].first);
    for (n, &i) in order.iter().enumerate() {
        let (a, x) = (&buffers[i], p.offsets[i]);
        if x % ALIGN != 0 || x + a.bytes > p.total {
            return Err(format!(
                "buffer {i} ({a:?}) at {x} in an arena of {}",
                p.total
            ));
        }
        // Later-starting buffers overlap in time only while they start before `a` ends.
        for &j in order[n + 1..]
            .iter()
            .take_while(|&&j| buffers[j].first <= a.last)
        {
            let (b, y) = (&buffers[j], p.offsets[j]);
            if a.overlaps_in_time(b) && x < y + b.bytes && y < x + a.bytes {
                return Err(format!(
                    "buffers {i} {a:?} at {x} and {j} {b:?} at {y} overlap"
                ));
            }
        }
    }
    Ok(())
}

/// Every buffer in its own place (no reuse): for debugging, so every value stays readable.
pub fn unshared(buffers: &[Lifetime]) -> MemoryPlan {
    let mut offsets = Vec::with_capacity(buffers.len());
    let mut total = 0;
    for b in buffers {
        offsets.push(total);
        total += aligned(b.bytes.max(1));
    }
    MemoryPlan { offsets, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(bytes: usize, first: usize, last: usize) -> Lifetime {
        Lifetime { bytes, first, last }
    }

    fn check(buffers: &[Lifetime], p: &MemoryPlan) {
        super::check(buffers, p).unwrap();
    }

    #[test]
    fn the_check_finds_an_overlap() {
        let b = vec![lt(1000, 0, 5), lt(1000, 3, 8)];
        let bad = MemoryPlan {
            offsets: vec![0, 512],
            total: 2048,
        };
        assert!(super::check(&b, &bad).is_err());
        assert!(super::check(&b, &unshared(&b)).is_ok());
    }

    #[test]
    fn a_chain_reuses_memory() {
        // x0 -> x1 -> x2 -> x3: only neighbours are alive together.
        let b: Vec<_> = (0..4).map(|i| lt(1000, i, i + 1)).collect();
        let p = plan(&b);
        check(&b, &p);
        assert_eq!(p.total, 2 * aligned(1000));
    }

    #[test]
    fn buffers_alive_together_are_disjoint() {
        let b = vec![
            lt(10, 0, 9),
            lt(5000, 2, 3),
            lt(300, 3, 6),
            lt(7000, 4, 5),
            lt(1, 0, 0),
        ];
        let p = plan(&b);
        check(&b, &p);
        assert!(p.total < b.iter().map(|l| aligned(l.bytes)).sum::<usize>());
    }

    #[test]
    fn random_lifetimes_never_collide() {
        let mut seed = 12345u64;
        let mut next = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        for _ in 0..20 {
            let b: Vec<_> = (0..200)
                .map(|_| {
                    let first = next(100);
                    lt(1 + next(100_000), first, first + next(20))
                })
                .collect();
            let p = plan(&b);
            check(&b, &p);
            let peak = (0..120)
                .map(|s| {
                    b.iter()
                        .filter(|l| l.first <= s && s <= l.last)
                        .map(|l| aligned(l.bytes))
                        .sum::<usize>()
                })
                .max()
                .unwrap();
            assert!(p.total >= peak);
            assert!(p.total <= peak * 2, "plan {} for peak {peak}", p.total);
        }
    }
}
