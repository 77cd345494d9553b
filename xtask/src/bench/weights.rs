//! `cargo xtask bench weights`: a UNet-sized fp16 weight set through `weight.bin` and back.
//!
//! Tensors follow the shapes of Stable Diffusion 1.x UNet layers (3×3 convs, attention and
//! feed-forward projections, norms and biases), cycled until the requested size is reached.
//! Their values are generated piece by piece, so neither phase ever holds a whole tensor.

use super::rss;
use anyhow::{Context, Result, bail};
use sd_mil::blob::{BlobDtype, BlobFile, BlobWriter};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `cargo xtask bench weights`.
#[derive(clap::Args)]
pub struct Args {
    /// Total size of the weight set in GB (10^9 bytes).
    #[arg(long, default_value_t = 1.7)]
    gb: f64,
    /// Folder for the temporary weight file (default: the system temp folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Bytes generated and handed to the writer per piece.
    #[arg(long, default_value_t = 4 << 20)]
    piece: usize,
}

/// Element counts of one cycle of UNet-like tensors (channels 320/640/1280, text dim 768).
const SHAPES: &[u64] = &[
    1280 * 1280 * 9,
    1280 * 1280,
    1280 * 1280,
    1280 * 1280,
    1280 * 1280,
    1280 * 768,
    1280 * 768,
    10240 * 1280,
    1280 * 5120,
    640 * 640 * 9,
    640 * 640,
    640 * 640,
    640 * 768,
    5120 * 640,
    640 * 2560,
    320 * 320 * 9,
    320 * 320,
    320 * 768,
    2560 * 320,
    320 * 1280,
    1280,
    1280,
    1280,
    1280,
    1280,
    10240,
    640,
    640,
    640,
    640,
    5120,
    320,
    320,
    320,
    320,
    2560,
    1280 * 1280,
    640 * 640,
];

/// Removes the temporary file however the benchmark ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One measured phase.
struct Phase {
    what: &'static str,
    bytes: u64,
    time: Duration,
    peak_rss: u64,
}

impl Phase {
    fn print(&self) {
        println!(
            "{:<44} {:>7.3} GB in {:>7.3} s = {:>6.2} GB/s, peak RSS {:>6.1} MB",
            self.what,
            self.bytes as f64 / 1e9,
            self.time.as_secs_f64(),
            self.bytes as f64 / 1e9 / self.time.as_secs_f64(),
            self.peak_rss as f64 / 1e6
        );
    }
}

/// Runs the benchmark and prints one line per phase.
pub fn run(args: Args) -> Result<()> {
    if args.gb.is_nan() || args.gb <= 0.0 || args.piece == 0 || !args.piece.is_multiple_of(8) {
        bail!("--gb must be positive and --piece a positive multiple of 8");
    }
    let target = (args.gb * 1e9) as u64;
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    let path = TempFile(dir.join(format!("sd-bench-weights-{}.bin", std::process::id())));
    let counts = tensor_counts(target);
    println!(
        "weight set: {} fp16 tensors, {:.3} GB, file {}",
        counts.len(),
        counts.iter().sum::<u64>() as f64 * 2.0 / 1e9,
        path.0.display()
    );
    let can_reset = rss::reset_peak();
    if !can_reset {
        println!("note: /proc/self/clear_refs refused; peak RSS is since process start");
    }
    let (write, written_sum, sync) = write_phase(&path.0, &counts, args.piece)?;
    write.print();
    sync.print();
    rss::reset_peak();
    let baseline = TempFile(dir.join(format!("sd-bench-raw-{}.bin", std::process::id())));
    raw_write_phase(&baseline.0, write.bytes, args.piece)?.print();
    drop(baseline);
    rss::reset_peak();
    let (read, read_sum) = read_phase(&path.0, counts.len())?;
    read.print();
    if read_sum != written_sum {
        bail!("checksum mismatch: wrote {written_sum:#018x}, read {read_sum:#018x}");
    }
    println!("checksums agree ({read_sum:#018x})");
    Ok(())
}

/// Element counts of the tensors, cycling through [`SHAPES`] until `target` bytes.
fn tensor_counts(target: u64) -> Vec<u64> {
    let mut counts = Vec::new();
    let mut bytes = 0;
    for &count in SHAPES.iter().cycle() {
        if bytes >= target {
            break;
        }
        let count = count.min((target - bytes).div_ceil(2));
        counts.push(count);
        bytes += count * 2;
    }
    counts
}

/// Streams every tensor into a new blob file; returns the write phase (time inside the writer
/// only, generation excluded), the data checksum and the fsync phase.
fn write_phase(path: &Path, counts: &[u64], piece: usize) -> Result<(Phase, u64, Phase)> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; piece];
    let mut sum = 0u64;
    let mut clock = Stopwatch::default();
    let mut writer = clock.time(|| BlobWriter::create(path))?;
    for &count in counts {
        let mut stream = clock.time(|| writer.begin_blob(BlobDtype::F16, count))?;
        let mut left = count * 2;
        while left > 0 {
            let n = left.min(piece as u64) as usize;
            rng.fill_f16(&mut buf[..n]);
            sum = checksum(sum, &buf[..n]);
            clock.time(|| stream.write_all(&buf[..n]))?;
            left -= n as u64;
        }
        clock.time(|| stream.finish())?;
    }
    let file = clock.time(|| writer.finish())?;
    let len = std::fs::metadata(path)?.len();
    let write = Phase {
        what: "write (streaming BlobWriter, page cache)",
        bytes: len,
        time: clock.total,
        peak_rss: rss::peak_bytes()?,
    };
    clock.time(|| file.get_ref().sync_all()).context("fsync")?;
    let sync = Phase {
        what: "write + fsync to disk",
        bytes: len,
        time: clock.total,
        peak_rss: rss::peak_bytes()?,
    };
    Ok((write, sum, sync))
}

/// The same amount of generated data written with plain `File::write_all` in pieces of the
/// same size: what this machine's page cache allows, for comparison with the blob writer.
fn raw_write_phase(path: &Path, bytes: u64, piece: usize) -> Result<Phase> {
    let mut rng = XorShift(1);
    let mut buf = vec![0u8; piece];
    let mut clock = Stopwatch::default();
    let mut file = clock.time(|| std::fs::File::create(path))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece as u64) as usize;
        rng.fill_f16(&mut buf[..n]);
        clock.time(|| file.write_all(&buf[..n]))?;
        left -= n as u64;
    }
    Ok(Phase {
        what: "baseline: plain File::write_all, same bytes",
        bytes,
        time: clock.total,
        peak_rss: rss::peak_bytes()?,
    })
}

/// Accumulates the time spent in timed calls.
#[derive(Default)]
struct Stopwatch {
    total: Duration,
}

impl Stopwatch {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.total += start.elapsed();
        out
    }
}

/// Maps the file, walks every blob, checksums every byte and releases each blob's pages.
fn read_phase(path: &Path, expected: usize) -> Result<(Phase, u64)> {
    let start = Instant::now();
    let file = BlobFile::open(path)?;
    let mut sum = 0u64;
    let mut blobs = 0;
    for blob in file.iter() {
        let blob = blob?;
        sum = checksum(sum, blob.data);
        file.release(&blob);
        blobs += 1;
    }
    let time = start.elapsed();
    if blobs != expected {
        bail!("read {blobs} blobs, wrote {expected}");
    }
    let phase = Phase {
        what: "read (BlobFile mmap, iter, checksum)",
        bytes: file.len(),
        time,
        peak_rss: rss::peak_bytes()?,
    };
    Ok((phase, sum))
}

/// Order-dependent checksum of `bytes` (a multiple of 8 long, or the last piece of a blob).
fn checksum(sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let sum = words.by_ref().fold(sum, |s, w| {
        s.rotate_left(5) ^ u64::from_le_bytes(w.try_into().expect("8-byte chunk"))
    });
    words
        .remainder()
        .iter()
        .fold(sum, |s, &b| s.rotate_left(5) ^ u64::from(b))
}

/// xorshift64 generator of finite fp16 weights with magnitude below 1.
struct XorShift(u64);

impl XorShift {
    fn fill_f16(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            // Clear exponent bits 14 and 10 of each half: exponents 0..=14, never inf/NaN.
            let halves = (x & 0xbbff_bbff_bbff_bbff).to_le_bytes();
            chunk.copy_from_slice(&halves[..chunk.len()]);
        }
    }
}
