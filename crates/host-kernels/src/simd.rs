//! Compile-thrice dispatch: a loop body written once, compiled for AVX-512, for AVX2+FMA and
//! for the baseline target, and chosen at run time. The bodies are plain scalar Rust that the compiler
//! vectorises; `#[target_feature]` only widens the instructions it may use.

/// Whether this CPU has AVX2 and FMA (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether this CPU also has AVX-512F (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| has_avx2_fma() && is_x86_feature_detected!("avx512f"))
}

/// Defines `pub(crate) fn $name($args) -> $ret` that runs `$body` compiled with AVX-512F or
/// AVX2+FMA where the CPU has them, and compiled for the baseline otherwise.
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::has_avx512() {
                    // SAFETY: the CPU was checked to support AVX-512F, AVX2 and FMA.
                    return unsafe { widest($($arg),*) };
                }
                if $crate::simd::has_avx2_fma() {
                    // SAFETY: the CPU was checked to support AVX2 and FMA.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use dispatch;

/// `e^x` for `f32`, within 2 ulp of libm's `expf` on `[-87, 88]` (clamped outside it):
/// Cephes' range reduction and degree-6 polynomial, branch-free so that loops over it
/// vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest through the 1.5 * 2^23 trick (no `round` call, which SSE2 lacks).
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.0);
    let n = (x * LOG2E + SHIFT) - SHIFT;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n through the exponent bits; n is in [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

/// Lanes of the partial sums and maxima below: one AVX-512 register of f32 (two AVX2 ones).
const LANES: usize = 16;

/// The sum of `values`, accumulated in [`LANES`] partial sums so that the loop vectorises (a
/// single running sum is a serial dependency chain the compiler must keep in order).
#[inline(always)]
pub(crate) fn sum(values: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// The largest of `values` (`-inf` when empty), in [`LANES`] partial maxima as [`sum`] does.
#[inline(always)]
pub(crate) fn max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lane_sums_and_maxima_match_the_plain_ones() {
        for n in [0usize, 1, 7, 8, 9, 63, 64, 385] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            assert_eq!(super::sum(&v), v.iter().sum::<f32>(), "n {n}");
            assert_eq!(
                super::max(&v),
                v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x))
            );
        }
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        for i in -87_000..87_900 {
            let x = i as f32 * 1e-3 + 0.000_37;
            let (ours, libm) = (super::exp(x), x.exp());
            let rel = ((ours - libm) / libm).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(super::exp(-1000.0), (-87.336_54f32).exp());
        assert!(super::exp(-1000.0) < 1.2e-38);
    }
}
