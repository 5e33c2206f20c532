//! bf16 dense layers on Intel AMX tiles (`TDPBF16PS`): inputs rounded to bf16, products summed
//! in f32. Only x86-64 Linux CPUs with AMX-BF16 (Sapphire Rapids and later), where the kernel
//! grants the tile state; [`available`] says so, and nothing here runs where it is false.
//!
//! Layout: the weight `[k, n]` is packed once into column blocks of 16, each block as `k/2` rows
//! of 16 (even, odd) pairs (the "VNNI" layout a B tile reads); `k` and `n` are padded with zeros
//! to multiples of 32. Activations are rounded to bf16 per call, rows padded to a multiple of 32.
//! A 32x32 output block lives in four accumulator tiles across the whole `k` loop.
//!
//! Split ("bf16x3") products: each value `v` is `hi + lo` with `hi = bf16(v)` and
//! `lo = bf16(v - hi)` (16 significant bits together), and `x · W ≈ xhi·Whi + xlo·Whi + xhi·Wlo`
//! (the dropped `xlo·Wlo` is ~2^-16 relative). The three products are one GEMM over a `k` three
//! times as long: `[xhi | xlo | xhi] · [Whi; Whi; Wlo]`.

/// Rows, and `k` steps, of one tile: 16 rows of 64 bytes (16 f32 or 32 bf16).
const TILE: usize = 16;
/// The `k` covered by one tile product (32 bf16 in a 64-byte row).
const K_STEP: usize = 32;
/// Rows and columns of the output block one kernel call keeps in tiles (2 x 2 tiles).
const BLOCK: usize = 32;

/// Rounds to bf16, to nearest even (NaN stays NaN). Branch-free, so that loops of it vectorise.
#[inline]
pub(crate) fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let nan = (bits & 0x7fff_ffff) > 0x7f80_0000;
    (if nan { (bits >> 16) | 0x40 } else { rounded }) as u16
}

/// Whether this CPU and OS run the bf16 tiles (checked once; on Linux this also asks the kernel
/// for the tile state, as each process must).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let (basic, leaf7) = (__cpuid(0), __cpuid_count(7, 0));
    if basic.eax < 7 {
        return false;
    }
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
    if !(amx_bf16 && amx_tile && osxsave) {
        return false;
    }
    // XCR0 bits 17 and 18: the OS saves the tile configuration and data.
    let xcr0 = xgetbv0();
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    request_tile_data() == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called after CPUID reported OSXSAVE, which makes XGETBV legal.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: 0 when granted (for the process).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> i64 {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain syscall that only changes this process's permitted xsave features.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _,
            options(nostack));
    }
    ret
}

/// The bf16 part left over after `hi = bf16(x)`: `bf16(x - hi)` (0 where `hi` is not finite).
#[inline]
fn low_part(x: f32, hi: u16) -> u16 {
    let hi = f32::from_bits(u32::from(hi) << 16);
    let lo = to_bf16(x - hi);
    if hi.is_finite() { lo } else { 0 }
}

/// One product (`xhi·Whi`) or three (`xhi·Whi + xlo·Whi + xhi·Wlo`, near f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Values rounded to bf16.
    One,
    /// Values split into two bf16 parts, three products.
    Three,
}

impl Split {
    fn segments(self) -> usize {
        match self {
            Split::One => 1,
            Split::Three => 3,
        }
    }
}

/// A `[k, n]` weight packed for the tiles.
#[derive(Debug, Clone)]
pub(crate) struct PackedBf16 {
    data: Vec<u16>,
    k: usize,
    n: usize,
    /// `k` padded to 32, times the segments of `split`: the `k` the kernel runs over.
    k_pad: usize,
    /// `k` padded to 32 (one segment).
    k_segment: usize,
    n_pad: usize,
    split: Split,
}

impl PackedBf16 {
    /// Packs a row-major `[k, n]` weight: `[Whi]`, or `[Whi; Whi; Wlo]` for [`Split::Three`].
    pub(crate) fn new(weight: &[f32], k: usize, n: usize, split: Split) -> Self {
        debug_assert_eq!(weight.len(), k * n);
        let k_segment = k.div_ceil(K_STEP) * K_STEP;
        let k_pad = k_segment * split.segments();
        let n_pad = n.div_ceil(BLOCK) * BLOCK;
        let mut data = vec![0u16; k_pad * n_pad];
        for kk in 0..k {
            for nn in 0..n {
                let w = weight[kk * n + nn];
                let hi = to_bf16(w);
                data[Self::offset(k_pad, kk, nn)] = hi;
                if split == Split::Three {
                    data[Self::offset(k_pad, k_segment + kk, nn)] = hi;
                    data[Self::offset(k_pad, 2 * k_segment + kk, nn)] = low_part(w, hi);
                }
            }
        }
        Self {
            data,
            k,
            n,
            k_pad,
            k_segment,
            n_pad,
            split,
        }
    }

    /// One product or three.
    pub(crate) fn split(&self) -> Split {
        self.split
    }

    /// Where `W[kk, nn]` lives: column block `nn / 16`, pair row `kk / 2`, column, then parity.
    fn offset(k_pad: usize, kk: usize, nn: usize) -> usize {
        (nn / TILE) * (k_pad * TILE) + (kk / 2) * (2 * TILE) + (nn % TILE) * 2 + kk % 2
    }
}

/// The tile configuration: palette 1, tiles 0-7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn all_full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = TILE as u8;
        }
        Self(c)
    }
}

/// How a product block reaches the output: written or added, with the bias or without.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    /// Add onto what `out` holds (a residual) instead of overwriting it.
    pub(crate) accumulate: bool,
    /// Added to every row (`[n]`).
    pub(crate) bias: Option<&'a [f32]>,
}

/// `out[r, j] (+)= Σ_k x[r, k] · W[k, j] + bias[j]` for the rows of `x` (`[rows, k]`), bf16
/// products summed in f32 (see [`Epilogue`]). `out` is `[rows, n]`, row-major.
///
/// Rows go 32 at a time: converted to bf16 into a per-thread block that stays in L1, then
/// multiplied by every 32-column panel of `W` (from L2); each 32x32 result leaves the tiles
/// through a small scratch and is added onto `out` (no tile ever reads `out`).
///
/// # Panics
/// If [`available`] is false or the shapes disagree.
pub(crate) fn gemm(x: &[f32], w: &PackedBf16, out: &mut [f32], epilogue: Epilogue<'_>) {
    assert!(available(), "AMX-BF16 is not available on this CPU");
    let rows = x.len() / w.k;
    assert_eq!(x.len(), rows * w.k);
    assert_eq!(out.len(), rows * w.n);
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), w.n);
    }
    if rows == 0 {
        return;
    }
    thread_local! {
        static A_BLOCK: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    A_BLOCK.with_borrow_mut(|a| {
        a.clear();
        a.resize(BLOCK * w.k_pad, 0);
        let mut scratch = [0f32; BLOCK * BLOCK];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` holds (asserted above); `a` is BLOCK x k_pad and `w.data` is
        // k_pad x n_pad, the sizes the kernel reads; it writes only `scratch` (BLOCK x BLOCK).
        unsafe {
            tiles::configure(&TileConfig::all_full());
            for m0 in (0..rows).step_by(BLOCK) {
                let m_len = BLOCK.min(rows - m0);
                convert_rows(&x[m0 * w.k..(m0 + m_len) * w.k], w, a);
                for n0 in (0..w.n_pad).step_by(BLOCK) {
                    let b0 = w.data.as_ptr().add(n0 * w.k_pad);
                    tiles::block(
                        scratch.as_mut_ptr(),
                        BLOCK * 4,
                        a.as_ptr(),
                        w.k_pad * 2,
                        b0,
                        w.k_pad,
                        w.k_pad / K_STEP,
                    );
                    let n_len = BLOCK.min(w.n.saturating_sub(n0));
                    let bias = epilogue.bias.map(|b| &b[n0..n0 + n_len]);
                    for (r, acc) in scratch.chunks_exact(BLOCK).take(m_len).enumerate() {
                        let row = &mut out[(m0 + r) * w.n + n0..][..n_len];
                        let acc = &acc[..n_len];
                        match (epilogue.accumulate, bias) {
                            (false, None) => row.copy_from_slice(acc),
                            (false, Some(b)) => {
                                for ((o, &v), &b) in row.iter_mut().zip(acc).zip(b) {
                                    *o = v + b;
                                }
                            }
                            (true, None) => row.iter_mut().zip(acc).for_each(|(o, &v)| *o += v),
                            (true, Some(b)) => {
                                for ((o, &v), &b) in row.iter_mut().zip(acc).zip(b) {
                                    *o += v + b;
                                }
                            }
                        }
                    }
                }
            }
            tiles::release();
        }
    });
}

/// Up to 32 rows of `x` into the bf16 block `a` (`[32, k_pad]`; rows past `x`'s are zeros),
/// as `[xhi]` or `[xhi | xlo | xhi]`.
fn convert_rows(x: &[f32], w: &PackedBf16, a: &mut [u16]) {
    let m_len = x.len() / w.k;
    a[m_len * w.k_pad..].fill(0);
    for (src, dst) in x.chunks_exact(w.k).zip(a.chunks_exact_mut(w.k_pad)) {
        match w.split {
            Split::One => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = to_bf16(s);
                }
            }
            Split::Three => {
                // [xhi | xlo | xhi], each segment k_segment long (padding stays zero).
                let (hi, rest) = dst.split_at_mut(w.k_segment);
                let (lo, hi_again) = rest.split_at_mut(w.k_segment);
                for (i, &s) in src.iter().enumerate() {
                    let h = to_bf16(s);
                    hi[i] = h;
                    lo[i] = low_part(s, h);
                    hi_again[i] = h;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use std::arch::asm;

    use super::{K_STEP, TILE, TileConfig};

    /// Loads the tile configuration.
    pub(super) unsafe fn configure(config: &TileConfig) {
        // SAFETY: the caller checked AMX; the config is 64 valid bytes.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
    }

    /// Releases the tile state.
    pub(super) unsafe fn release() {
        // SAFETY: the caller checked AMX.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// A 32x32 f32 block at `c` (row stride `c_stride` bytes) = A (32 rows at `a`, row stride
    /// `a_stride` bytes) x B (two packed column blocks of 16 starting at `b`, each `k_pad` x 16
    /// bf16), over `steps` steps of 32 k.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        c: *mut f32,
        c_stride: usize,
        a: *const u16,
        a_stride: usize,
        b: *const u16,
        k_pad: usize,
        steps: usize,
    ) {
        // SAFETY (whole body): the caller guarantees AMX and in-bounds padded buffers.
        unsafe {
            let c_low = c.cast::<u8>().add(TILE * c_stride);
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem),
            );
            // Second column block of B: `k_pad / 2` pair rows of 16 pairs further on.
            let b_next = k_pad * TILE;
            for step in 0..steps {
                let a0 = a.add(step * K_STEP);
                let a1 = a0.cast::<u8>().add(TILE * a_stride);
                let b0 = b.add(step * K_STEP * TILE);
                let b1 = b0.add(b_next);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, sa = in(reg) a_stride,
                    b0 = in(reg) b0, b1 = in(reg) b1, sb = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c} + {s}*1], tmm0",
                "tilestored [{c} + {s}*1 + 64], tmm1",
                "tilestored [{cl} + {s}*1], tmm2",
                "tilestored [{cl} + {s}*1 + 64], tmm3",
                c = in(reg) c, cl = in(reg) c_low, s = in(reg) c_stride,
                options(nostack),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(x: f32) -> f64 {
        f64::from(f32::from_bits(u32::from(to_bf16(x)) << 16))
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to the even (the upper).
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.0), 0xc000);
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
    }

    #[test]
    fn tiles_match_a_bf16_reference_at_ragged_shapes() {
        if !available() {
            eprintln!("skipped: this CPU has no AMX-BF16");
            return;
        }
        for &(rows, k, n) in &[(1, 1, 1), (33, 40, 50), (64, 384, 96), (70, 77, 33)] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7919 % 1999) as f32 / 999.5 - 1.0) * 1.7)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 104729 % 2003) as f32 / 1001.5 - 1.0) * 0.3)
                .collect();
            let packed = PackedBf16::new(&w, k, n, Split::One);
            let mut out: Vec<f32> = (0..rows * n).map(|i| i as f32 * 0.01).collect();
            let before = out.clone();
            let add = Epilogue {
                accumulate: true,
                bias: None,
            };
            gemm(&x, &packed, &mut out, add);
            // Three products: error ~2^-16 of the terms' magnitudes (one product: ~2^-9), so
            // both bounded by Σ|x·w| and the split at least 30x closer to the exact product.
            let mut split = before.clone();
            gemm(
                &x,
                &PackedBf16::new(&w, k, n, Split::Three),
                &mut split,
                add,
            );
            let (mut worst_one, mut worst_three) = (0f64, 0f64);
            for r in 0..rows {
                for j in 0..n {
                    let terms = (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + j]));
                    let exact = f64::from(before[r * n + j]) + terms.clone().sum::<f64>();
                    let scale = 1.0 + terms.map(f64::abs).sum::<f64>();
                    let three = (f64::from(split[r * n + j]) - exact).abs() / scale;
                    let one = (f64::from(out[r * n + j]) - exact).abs() / scale;
                    assert!(three <= 1e-5, "split [{rows}x{k}x{n}] ({r}, {j}): {three}");
                    worst_one = worst_one.max(one);
                    worst_three = worst_three.max(three);
                }
            }
            assert!(
                worst_three * 30.0 <= worst_one || k < 8,
                "[{rows}x{k}x{n}] split error {worst_three} vs one product's {worst_one}"
            );
            for r in 0..rows {
                for j in 0..n {
                    let want: f64 = f64::from(before[r * n + j])
                        + (0..k)
                            .map(|i| bf(x[r * k + i]) * bf(w[i * n + j]))
                            .sum::<f64>();
                    let got = f64::from(out[r * n + j]);
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "[{rows}x{k}x{n}] ({r}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
