//! The 8-lane MD5 kernels for x86-64 CPUs with AVX2 or AVX-512, chosen at run time by
//! [`X86::detect`].
//!
//! The portable kernel in the parent module is plain Rust that LLVM vectorises for the x86-64
//! baseline (SSE2), where a 32-bit rotate costs five instructions and a vector holds 4 lanes.
//! AVX2 holds 8 lanes and rotates in three, but a binary built for the baseline cannot use it
//! unless a function enables it and the CPU is checked first: that is this module, and the only
//! `unsafe` in the store (the calls into the kernels, guarded by the detection token, and the
//! unaligned vector loads and stores, whose bounds the references carry). The message words of 8
//! lanes are gathered by two 8×8 transposes per block (24 shuffles each) instead of 128 scalar
//! inserts.
//!
//! The kernels are latency-bound, not throughput-bound: each MD5 step waits for the one before
//! (`a = b + rotl(a + F(b, c, d) + m + k, s)`), so a step costs the length of that dependency
//! chain whatever the number of busy lanes. AVX2 needs ≈ 6 dependent instructions per step (F/G/I
//! in two, the rotate as two shifts and an or); AVX-512VL, on the same 256-bit registers, needs 4:
//! each round function is one `vpternlogd` and the rotate one `vprold`. Hence the AVX-512 kernel
//! whenever the CPU has AVX-512F and VL: with 4 busy lanes (`hoist put`'s 4 parts in flight) half
//! the vector is idle either way, and a shorter chain is the only way to hash those 4 streams
//! faster. 512-bit registers (16 lanes) would not help: there are rarely more than 8 parts in
//! flight, and the chain is no shorter. Measured (`md5_lanes`'s module doc): with 4 busy lanes
//! the AVX-512 kernel takes ≈ 0.8× the CPU of the AVX2 one, ≈ 4 cycles a step.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256i, _mm_crc32_u64, _mm256_add_epi32, _mm256_and_si256, _mm256_andnot_si256, _mm256_loadu_si256,
    _mm256_or_si256, _mm256_permute2x128_si256, _mm256_rol_epi32, _mm256_set1_epi32, _mm256_slli_epi32,
    _mm256_srli_epi32, _mm256_storeu_si256, _mm256_ternarylogic_epi32, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64,
    _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm256_xor_si256,
};

use super::{BLOCK, K};

/// Which instruction set a kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// AVX-512F with VL: `vpternlogd` round functions and `vprold` rotates on 256-bit registers.
    Avx512,
    /// AVX2: round functions and rotates from two to three instructions each.
    Avx2,
}

/// Proof that the running CPU has the instruction set of the kernel it names: only
/// [`X86::detect`] and [`X86::all`] make one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct X86(Isa);

impl X86 {
    /// The fastest kernel this CPU runs, if it has AVX2 at least (std checks once, then caches).
    pub(crate) fn detect() -> Option<Self> {
        Self::all().into_iter().next()
    }

    /// Every kernel this CPU runs, fastest first (tests check each one).
    pub(crate) fn all() -> Vec<Self> {
        let mut found = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
            found.push(Self(Isa::Avx512));
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            found.push(Self(Isa::Avx2));
        }
        found
    }

    /// The fewest busy lanes for which this kernel costs less than the scalar one: one lane on
    /// AVX-512 (≈ 1.5 s/GiB against ≈ 1.7, and the CRC32C comes free), two on AVX2 (one lane
    /// ≈ 2.1 s/GiB).
    pub(crate) fn min_lanes(self) -> usize {
        match self.0 {
            Isa::Avx512 => 1,
            Isa::Avx2 => 2,
        }
    }

    /// The kernel's name, for test messages.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self.0 {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
        }
    }

    /// Runs the compression function over every block of the 8 lanes' `data` (equal lengths,
    /// whole blocks): lane `i`'s state is word `i` of each `state[w]`; and advances the CRC32C of
    /// lane `i` over the same bytes where `crcs[i]` is `Some`.
    pub(crate) fn compress_blocks(self, state: &mut [[u32; 8]; 4], data: [&[u8]; 8], crcs: &mut [Option<u32>; 8]) {
        let blocks = data[0].len() / BLOCK;
        assert!(data.iter().all(|d| d.len() == blocks * BLOCK), "lanes need equal whole blocks");
        match self.0 {
            // SAFETY: an `X86(Avx512)` exists only if the CPU has AVX-512F and AVX-512VL.
            Isa::Avx512 => unsafe { compress_blocks_avx512(state, &data, crcs, blocks) },
            // SAFETY: an `X86(Avx2)` exists only if the CPU has AVX2 (which implies SSE4.2's `crc32`).
            Isa::Avx2 => unsafe { compress_blocks_avx2(state, &data, crcs, blocks) },
        }
    }
}

/// Loads 32 bytes.
#[target_feature(enable = "avx2")]
fn load(bytes: &[u8; 32]) -> __m256i {
    // SAFETY: the reference covers the 32 bytes read; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// Loads 8 words.
#[target_feature(enable = "avx2")]
fn load_words(words: &[u32; 8]) -> __m256i {
    // SAFETY: as in `load`: 32 readable bytes, no alignment needed.
    unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
}

/// Stores 8 words.
#[target_feature(enable = "avx2")]
fn store_words(v: __m256i) -> [u32; 8] {
    let mut out = [0u32; 8];
    // SAFETY: `out` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
    out
}

/// Transposes 8 rows of 8 words: word `w` of row `r` becomes word `r` of row `w`.
#[target_feature(enable = "avx2")]
fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// The CRC32C `crc` (as the `crc32c` crate keeps it: pre- and post-inverted) extended by one
/// block, 8 bytes per `crc32` instruction.
#[target_feature(enable = "sse4.2")]
#[allow(clippy::cast_possible_truncation)] // `crc32` leaves the CRC in the low 32 bits
fn crc32c_block(crc: u32, block: &[u8; BLOCK]) -> u32 {
    let mut x = u64::from(!crc);
    for word in block.chunks_exact(8) {
        x = _mm_crc32_u64(x, u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    !(x as u32)
}

/// Sixteen steps of one round: `$fun` is F, G, H or I, `$idx` the message word of step `t`, and
/// `$step` the kernel's step (`a = b + rotl(a + fun + m + k, s)`).
macro_rules! round {
    ($step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident, $fun:ident, $base:literal, $idx:expr, [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
        round!(@quad $step, $a, $b, $c, $d, $m, $fun, $base, $idx, [$s0, $s1, $s2, $s3]);
        round!(@quad $step, $a, $b, $c, $d, $m, $fun, $base + 4, $idx, [$s0, $s1, $s2, $s3]);
        round!(@quad $step, $a, $b, $c, $d, $m, $fun, $base + 8, $idx, [$s0, $s1, $s2, $s3]);
        round!(@quad $step, $a, $b, $c, $d, $m, $fun, $base + 12, $idx, [$s0, $s1, $s2, $s3]);
    };
    (@quad $step:ident, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident, $fun:ident, $t:expr, $idx:expr, [$s0:literal, $s1:literal, $s2:literal, $s3:literal]) => {
        $step!($a, $b, $fun!($b, $c, $d), $m[$idx($t)], $t, $s0);
        $step!($d, $a, $fun!($a, $b, $c), $m[$idx($t + 1)], $t + 1, $s1);
        $step!($c, $d, $fun!($d, $a, $b), $m[$idx($t + 2)], $t + 2, $s2);
        $step!($b, $c, $fun!($c, $d, $a), $m[$idx($t + 3)], $t + 3, $s3);
    };
}

/// The whole compression loop of a kernel, given its step and round functions (RFC 1321's F, G,
/// H, I); the two kernels differ only in those. Each block's CRC32C work (independent of the MD5
/// chain) is issued before its rounds, so the CPU runs it in the slots the chain leaves idle.
macro_rules! compress_loop {
    ($state:ident, $data:ident, $crcs:ident, $blocks:ident, $step:ident, $f:ident, $g:ident, $h:ident, $i:ident) => {{
        let (mut a, mut b, mut c, mut d) =
            (load_words(&$state[0]), load_words(&$state[1]), load_words(&$state[2]), load_words(&$state[3]));
        for blk in 0..$blocks {
            // The 16 message words of block `blk`: word `w` of lane `i` in lane `i` of `m[w]`.
            let half = |h: usize| -> [__m256i; 8] {
                let at = blk * BLOCK + 32 * h;
                transpose(std::array::from_fn(|lane| load($data[lane][at..at + 32].try_into().expect("32 bytes"))))
            };
            let (lo, hi) = (half(0), half(1));
            let m: [__m256i; 16] = std::array::from_fn(|w| if w < 8 { lo[w] } else { hi[w - 8] });
            for (crc, d) in $crcs.iter_mut().zip($data) {
                if let Some(c) = crc {
                    *c = crc32c_block(*c, d[blk * BLOCK..(blk + 1) * BLOCK].try_into().expect("one block"));
                }
            }
            let (a0, b0, c0, d0) = (a, b, c, d);
            round!($step, a, b, c, d, m, $f, 0, |t: usize| t, [7, 12, 17, 22]);
            round!($step, a, b, c, d, m, $g, 16, |t: usize| (5 * t + 1) % 16, [5, 9, 14, 20]);
            round!($step, a, b, c, d, m, $h, 32, |t: usize| (3 * t + 5) % 16, [4, 11, 16, 23]);
            round!($step, a, b, c, d, m, $i, 48, |t: usize| (7 * t) % 16, [6, 10, 15, 21]);
            a = _mm256_add_epi32(a, a0);
            b = _mm256_add_epi32(b, b0);
            c = _mm256_add_epi32(c, c0);
            d = _mm256_add_epi32(d, d0);
        }
        *$state = [store_words(a), store_words(b), store_words(c), store_words(d)];
    }};
}

// AVX2: rotate as two shifts and an or.
macro_rules! step_avx2 {
    ($a:ident, $b:ident, $fun:expr, $m:expr, $t:expr, $s:literal) => {
        let x = _mm256_add_epi32(_mm256_add_epi32($a, _mm256_add_epi32($m, _mm256_set1_epi32(K[$t] as i32))), $fun);
        $a = _mm256_add_epi32($b, _mm256_or_si256(_mm256_slli_epi32::<$s>(x), _mm256_srli_epi32::<{ 32 - $s }>(x)));
    };
}
macro_rules! f_avx2 {
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
    };
}
macro_rules! g_avx2 {
    // (b & d) | (c & !d); the terms share no bit, so `+` works and shortens the chain.
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_add_epi32(_mm256_and_si256($b, $d), _mm256_andnot_si256($d, $c))
    };
}
macro_rules! h_avx2 {
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
    };
}
macro_rules! i_avx2 {
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_xor_si256($c, _mm256_or_si256($b, _mm256_xor_si256($d, _mm256_set1_epi32(-1))))
    };
}

#[target_feature(enable = "avx2")]
#[allow(clippy::cast_possible_wrap)]
fn compress_blocks_avx2(state: &mut [[u32; 8]; 4], data: &[&[u8]; 8], crcs: &mut [Option<u32>; 8], blocks: usize) {
    compress_loop!(state, data, crcs, blocks, step_avx2, f_avx2, g_avx2, h_avx2, i_avx2);
}

// AVX-512VL: one `vprold` rotate, and each round function one `vpternlogd`, whose immediate is
// the function's truth table over (b, c, d) = (0xF0, 0xCC, 0xAA).
macro_rules! step_avx512 {
    ($a:ident, $b:ident, $fun:expr, $m:expr, $t:expr, $s:literal) => {
        let x = _mm256_add_epi32(_mm256_add_epi32($a, _mm256_add_epi32($m, _mm256_set1_epi32(K[$t] as i32))), $fun);
        $a = _mm256_add_epi32($b, _mm256_rol_epi32::<$s>(x));
    };
}
macro_rules! f_avx512 {
    // b ? c : d
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_ternarylogic_epi32::<0xCA>($b, $c, $d)
    };
}
macro_rules! g_avx512 {
    // d ? b : c
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_ternarylogic_epi32::<0xE4>($b, $c, $d)
    };
}
macro_rules! h_avx512 {
    // b ^ c ^ d
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_ternarylogic_epi32::<0x96>($b, $c, $d)
    };
}
macro_rules! i_avx512 {
    // c ^ (b | !d)
    ($b:expr, $c:expr, $d:expr) => {
        _mm256_ternarylogic_epi32::<0x39>($b, $c, $d)
    };
}

#[target_feature(enable = "avx512f,avx512vl")]
#[allow(clippy::cast_possible_wrap)]
fn compress_blocks_avx512(state: &mut [[u32; 8]; 4], data: &[&[u8]; 8], crcs: &mut [Option<u32>; 8], blocks: usize) {
    compress_loop!(state, data, crcs, blocks, step_avx512, f_avx512, g_avx512, h_avx512, i_avx512);
}
