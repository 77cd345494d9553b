//! PSNR as Apple's converter computes it (peak from the reference).

/// PSNR(a, b) = 20·log10((max|b| + 1e-5) / (RMS(a − b) + 1e-10)), `b` the reference.
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr of tensors with different lengths");
    let peak = b.iter().fold(0f64, |m, v| m.max((*v as f64).abs()));
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum::<f64>()
        / a.len().max(1) as f64;
    20.0 * ((peak + 1e-5) / (mse.sqrt() + 1e-10)).log10()
}

#[cfg(test)]
mod tests {
    #[test]
    fn psnr_by_hand() {
        // peak 2, rms of (0.1, -0.1) = 0.1 → 20·log10(2.00001 / 0.1) ≈ 26.0206
        let p = super::psnr(&[1.1, 1.9], &[1.0, 2.0]);
        assert!((p - 26.0206).abs() < 1e-3, "{p}");
    }
}
