//! MD5 of several independent byte streams at once ("multi-buffer" MD5), in safe Rust, and the
//! CRC32C of the same bytes alongside when a stream asks for it.
//!
//! Owns the MD5 compression function and the padding; knows nothing about requests, files or
//! when to hash (that is `ingest`'s scheduling).
//!
//! Why CRC32C is here: it is the checksum `hoist put` and the browser module send with every
//! part, so the store verifies it on every byte. Computed on its own (the `crc32c` crate, one
//! pass over each 1 MiB buffer after it was written) it was ≈ 7 % of the store's CPU. The x86
//! kernels are bound by the latency of one MD5 step after another and leave the scalar ports
//! idle, so they run the `crc32` instruction over each lane's block (8 per lane, independent of
//! the MD5 chain) in the same loop, on bytes already in cache: the CRC costs next to nothing
//! there. The portable kernels and a lone lane use the `crc32c` crate instead.
//!
//! Why: S3 makes a part's `ETag` the MD5 of its bytes, and one MD5 stream is a chain of dependent
//! 32-bit operations: ≈ 0.65 GiB/s on one core here, whatever the instruction set (the `md-5`
//! crate's `asm` feature measured ≈ 5 % faster than its portable code). Streams that are
//! independent — the parts being uploaded at the same time — can be advanced in lock-step: word
//! `i` of every lane's state sits in one `[u32; N]`, so each MD5 operation is one SSE2 vector
//! operation over 4 lanes (LLVM vectorises these loops on x86-64's baseline; no `unsafe`, no
//! target features). Measured on this 2-core machine while other builds ran, single-thread CPU
//! time per GiB hashed:
//! 1 lane ≈ 2.0 s (same code as the `md-5` crate), 4 lanes ≈ 0.85 s, 8 lanes ≈ 0.75 s; so the
//! scheduler uses the 8-lane kernel for 5–8 ready lanes, the 4-lane one for 2–4, and 1 lane alone.
//!
//! One detail that matters: written as `(x << s) | (x >> (32 - s))`, a rotate is not vectorised
//! on SSE2 (LLVM's cost model rejects vector rotates without AVX-512/XOP and everything stays
//! scalar). The same rotate through a `u64` (`(x * 0x1_0000_0001) >> (32 - s)`) is vectorised as
//! two shuffles, two 64-bit shifts and a shuffle, which is what makes the lanes pay off.
//!
//! On CPUs with AVX2 or AVX-512 (checked at run time, so one binary serves every x86-64), 2–8
//! lanes (1–8 with AVX-512) go to an 8-lane kernel in [`x86`] instead. One core, CPU time per
//! GiB hashed (the thread's own, from `/proc/thread-self/schedstat`, 8 GiB each, 2026-11-29, the
//! other core busy): AVX-512 0.21 s with 8 busy lanes, 0.38–0.41 with 4 and 1.50–1.53 with 1;
//! AVX2 0.26–0.27, 0.48–0.57 and 2.1; the portable 8-lane kernel 0.56–0.58 and 1.06–1.15 with 8
//! and 4; one lane alone in the scalar kernel 1.71–1.72.

// The kernel must be one function body for the lanes to stay in vector registers, hence
// `inline(always)` on its pieces; the one-letter names are RFC 1321's (a, b, c, d, F, G, H, I).
#![allow(clippy::inline_always, clippy::many_single_char_names)]

#[cfg(target_arch = "x86_64")]
mod x86;

/// Bytes per MD5 block.
pub(crate) const BLOCK: usize = 64;

/// RFC 1321's initial state.
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// RFC 1321's sine table `T[1..=64]`.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// One 32-bit word of each of `N` lanes.
type W<const N: usize> = [u32; N];

/// The running MD5 of one stream: chaining state, bytes so far, and a partial block; and its
/// CRC32C when asked for.
#[derive(Debug, Clone)]
pub(crate) struct Md5Lane {
    state: [u32; 4],
    len: u64,
    partial: [u8; BLOCK],
    partial_len: usize,
    /// The CRC32C of every byte passed to the lane (partial block included), if kept.
    crc32c: Option<u32>,
}

impl Default for Md5Lane {
    fn default() -> Self {
        Self { state: INIT, len: 0, partial: [0; BLOCK], partial_len: 0, crc32c: None }
    }
}

impl Md5Lane {
    /// A lane that also keeps the CRC32C of its bytes.
    pub(crate) fn with_crc32c() -> Self {
        Self { crc32c: Some(0), ..Self::default() }
    }

    /// Whether the lane holds no partial block: only then may [`update_lanes`] advance it.
    pub(crate) fn is_aligned(&self) -> bool {
        self.partial_len == 0
    }

    /// Hashes `data` on this lane alone (any length).
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if let Some(crc) = &mut self.crc32c {
            *crc = crc32c::crc32c_append(*crc, data);
        }
        if self.partial_len > 0 {
            let n = (BLOCK - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
            self.partial_len += n;
            data = &data[n..];
            if self.partial_len < BLOCK {
                return;
            }
            let block = self.partial;
            self.compress_one(&block);
            self.partial_len = 0;
        }
        let whole = data.len() / BLOCK * BLOCK;
        let mut st: [W<1>; 4] = self.state.map(|w| [w]);
        compress_blocks(&mut st, [&data[..whole]]);
        self.state = st.map(|[w]| w);
        let rest = &data[whole..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
    }

    fn compress_one(&mut self, block: &[u8; BLOCK]) {
        let mut st: [W<1>; 4] = self.state.map(|w| [w]);
        compress_blocks(&mut st, [&block[..]]);
        self.state = st.map(|[w]| w);
    }

    /// Pads and returns the MD5 digest, and the CRC32C if the lane kept one.
    pub(crate) fn finish(mut self) -> ([u8; 16], Option<u32>) {
        let bits = self.len.wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.partial_len].copy_from_slice(&self.partial[..self.partial_len]);
        tail[self.partial_len] = 0x80;
        let end = if self.partial_len < BLOCK - 8 { BLOCK } else { 2 * BLOCK };
        tail[end - 8..end].copy_from_slice(&bits.to_le_bytes());
        let mut st: [W<1>; 4] = self.state.map(|w| [w]);
        compress_blocks(&mut st, [&tail[..end]]);
        self.state = st.map(|[w]| w);
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        (out, self.crc32c)
    }
}

/// Advances the lanes by the same number of whole blocks each: `data[i]` goes to `lanes[i]`, and
/// every slice must have the same length, a multiple of [`BLOCK`], and every lane be aligned
/// ([`Md5Lane::is_aligned`]). Picks the widest kernel that is not mostly idle; idle kernel lanes
/// hash a copy of the first lane's data and are thrown away.
///
/// # Panics
/// If the slices differ in length, are not whole blocks, or a lane holds a partial block.
pub(crate) fn update_lanes(lanes: &mut [&mut Md5Lane], data: &[&[u8]]) {
    assert_eq!(lanes.len(), data.len());
    let Some(first) = data.first() else { return };
    let len = first.len();
    assert!(len % BLOCK == 0 && data.iter().all(|d| d.len() == len), "lanes need equal whole blocks");
    assert!(lanes.iter().all(|l| l.is_aligned()), "a lane holds a partial block");
    #[cfg(target_arch = "x86_64")]
    if let Some(x86) = x86::X86::detect()
        && (x86.min_lanes()..=8).contains(&lanes.len())
    {
        return run::<8>(lanes, data, |st, d, crcs| x86.compress_blocks(st, d, crcs));
    }
    match lanes.len() {
        1 => lanes[0].update(first),
        2..=4 => run::<4>(lanes, data, portable),
        5..=8 => run::<8>(lanes, data, portable),
        _ => {
            let (l8, rest) = lanes.split_at_mut(8);
            update_lanes(l8, &data[..8]);
            update_lanes(rest, &data[8..]);
        }
    }
}

/// Advances up to `N` lanes with an `N`-lane `kernel`, which also advances the CRC32C of the
/// lanes that keep one (`Some` in its third argument; idle kernel lanes are `None`).
fn run<const N: usize>(
    lanes: &mut [&mut Md5Lane],
    data: &[&[u8]],
    kernel: impl FnOnce(&mut [W<N>; 4], [&[u8]; N], &mut [Option<u32>; N]),
) {
    let mut st = [[0u32; N]; 4];
    for (i, lane) in lanes.iter().enumerate() {
        for (w, s) in st.iter_mut().zip(lane.state) {
            w[i] = s;
        }
    }
    let input: [&[u8]; N] = std::array::from_fn(|i| data.get(i).copied().unwrap_or(data[0]));
    let mut crcs: [Option<u32>; N] = std::array::from_fn(|i| lanes.get(i).and_then(|l| l.crc32c));
    kernel(&mut st, input, &mut crcs);
    for (i, lane) in lanes.iter_mut().enumerate() {
        for (s, w) in lane.state.iter_mut().zip(&st) {
            *s = w[i];
        }
        lane.len += data[i].len() as u64;
        lane.crc32c = crcs[i];
    }
}

/// The portable `N`-lane kernel, with the CRC32Cs from the `crc32c` crate.
fn portable<const N: usize>(state: &mut [W<N>; 4], data: [&[u8]; N], crcs: &mut [Option<u32>; N]) {
    compress_blocks(state, data);
    for (crc, d) in crcs.iter_mut().zip(data) {
        if let Some(c) = crc {
            *c = crc32c::crc32c_append(*c, d);
        }
    }
}

/// Runs the compression function over every block of `data` (equal lengths, whole blocks).
#[inline(never)]
fn compress_blocks<const N: usize>(state: &mut [W<N>; 4], data: [&[u8]; N]) {
    let blocks = data[0].len() / BLOCK;
    let mut m = [[0u32; N]; 16];
    for b in 0..blocks {
        for (lane, d) in data.iter().enumerate() {
            let block = &d[b * BLOCK..(b + 1) * BLOCK];
            for (w, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
                w[lane] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
        }
        compress(state, &m);
    }
}

#[inline(always)]
fn f<const N: usize>(b: &W<N>, c: &W<N>, d: &W<N>) -> W<N> {
    std::array::from_fn(|i| d[i] ^ (b[i] & (c[i] ^ d[i])))
}

#[inline(always)]
fn g<const N: usize>(b: &W<N>, c: &W<N>, d: &W<N>) -> W<N> {
    // (b & d) | (c & !d); the two terms never share a bit, so `+` works and shortens the chain.
    std::array::from_fn(|i| (b[i] & d[i]).wrapping_add(c[i] & !d[i]))
}

#[inline(always)]
fn h<const N: usize>(b: &W<N>, c: &W<N>, d: &W<N>) -> W<N> {
    std::array::from_fn(|i| b[i] ^ c[i] ^ d[i])
}

#[inline(always)]
fn i<const N: usize>(b: &W<N>, c: &W<N>, d: &W<N>) -> W<N> {
    std::array::from_fn(|j| c[j] ^ (b[j] | !d[j]))
}

/// `a = b + rotl(a + fun + m + k, s)` on every lane.
#[inline(always)]
fn step<const N: usize>(a: &mut W<N>, b: &W<N>, fun: &W<N>, m: &W<N>, k: u32, s: u32) {
    for j in 0..N {
        // a + (m + k) first: both are ready early, so only one add waits for `fun`.
        let x = a[j].wrapping_add(m[j].wrapping_add(k)).wrapping_add(fun[j]);
        let r = if N == 1 {
            x.rotate_left(s)
        } else {
            // The vectorisable rotate (see the module doc); the result fits in 32 bits.
            #[allow(clippy::cast_possible_truncation)]
            let r = ((u64::from(x) * 0x1_0000_0001) >> (32 - s)) as u32;
            r
        };
        a[j] = r.wrapping_add(b[j]);
    }
}

/// Sixteen steps of one round, four at a time (the state words rotate roles).
macro_rules! round {
    ($fun:ident, $st:ident, $m:ident, $base:expr, $index:expr, [$s0:expr, $s1:expr, $s2:expr, $s3:expr]) => {
        let [a, b, c, d] = &mut $st;
        let mut t = $base;
        while t < $base + 16 {
            step(a, b, &$fun(b, c, d), &$m[$index(t)], K[t], $s0);
            step(d, a, &$fun(a, b, c), &$m[$index(t + 1)], K[t + 1], $s1);
            step(c, d, &$fun(d, a, b), &$m[$index(t + 2)], K[t + 2], $s2);
            step(b, c, &$fun(c, d, a), &$m[$index(t + 3)], K[t + 3], $s3);
            t += 4;
        }
    };
}

/// RFC 1321's compression of one 16-word block per lane.
#[inline(always)]
fn compress<const N: usize>(state: &mut [W<N>; 4], m: &[W<N>; 16]) {
    let mut st = *state;
    round!(f, st, m, 0, |t: usize| t, [7, 12, 17, 22]);
    round!(g, st, m, 16, |t: usize| (5 * t + 1) % 16, [5, 9, 14, 20]);
    round!(h, st, m, 32, |t: usize| (3 * t + 5) % 16, [4, 11, 16, 23]);
    round!(i, st, m, 48, |t: usize| (7 * t) % 16, [6, 10, 15, 21]);
    for (s, w) in state.iter_mut().zip(st) {
        for j in 0..N {
            s[j] = s[j].wrapping_add(w[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use md5::{Digest as _, Md5};

    use super::*;

    fn bytes(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    fn reference(data: &[u8]) -> [u8; 16] {
        Md5::digest(data).into()
    }

    /// Lane `i` of a test: even lanes keep a CRC32C, odd ones do not.
    fn lane(i: usize) -> Md5Lane {
        if i.is_multiple_of(2) { Md5Lane::with_crc32c() } else { Md5Lane::default() }
    }

    /// What lane `i` must finish with after `data`: the MD5 crate's digest, and the CRC32C
    /// crate's checksum if the lane keeps one.
    fn expected(i: usize, data: &[u8]) -> ([u8; 16], Option<u32>) {
        (reference(data), (i.is_multiple_of(2)).then(|| crc32c::crc32c(data)))
    }

    #[test]
    fn one_lane_matches_md5_and_crc32c_crates_at_every_length_and_split() {
        let data = bytes(1, 300);
        for i in 0..2 {
            for len in 0..data.len() {
                let mut l = lane(i);
                l.update(&data[..len]);
                assert_eq!(l.finish(), expected(i, &data[..len]), "len {len}");
            }
            for split in [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 200] {
                let mut l = lane(i);
                l.update(&data[..split]);
                l.update(&data[split..]);
                assert_eq!(l.finish(), expected(i, &data), "split {split}");
            }
        }
        assert_eq!(hex::encode(Md5Lane::default().finish().0), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn lanes_in_lock_step_match_md5_and_crc32c_crates_for_every_width() {
        for width in 1..=11 {
            let streams: Vec<Vec<u8>> = (0..width).map(|w| bytes(100 + w, 10 * BLOCK + 7 * w as usize)).collect();
            let mut lanes: Vec<Md5Lane> = (0..streams.len()).map(lane).collect();
            // Three rounds of lock-step blocks of different sizes, then each tail alone.
            let mut at = 0;
            for blocks in [1, 4, 5] {
                let mut refs: Vec<&mut Md5Lane> = lanes.iter_mut().collect();
                let data: Vec<&[u8]> = streams.iter().map(|s| &s[at..at + blocks * BLOCK]).collect();
                update_lanes(&mut refs, &data);
                at += blocks * BLOCK;
            }
            for (i, (mut l, s)) in lanes.into_iter().zip(&streams).enumerate() {
                l.update(&s[at..]);
                assert_eq!(l.finish(), expected(i, s), "width {width}, stream of {} bytes", s.len());
            }
        }
    }

    /// Every kernel (the portable 4- and 8-lane ones, and AVX2's and AVX-512's where the CPU has
    /// them), whatever `update_lanes` would pick here, on lanes with different histories, with
    /// and without CRC32C, and idle kernel lanes.
    #[test]
    fn every_kernel_matches_md5_and_crc32c_crates() {
        fn check<const N: usize>(name: &str, kernel: impl Fn(&mut [W<N>; 4], [&[u8]; N], &mut [Option<u32>; N])) {
            for width in 1..=N {
                let streams: Vec<Vec<u8>> =
                    (0..width).map(|w| bytes(300 + u32::try_from(w).unwrap(), 9 * BLOCK + 64 * w)).collect();
                let mut lanes: Vec<Md5Lane> = (0..width).map(lane).collect();
                // Each lane first alone over a different length, then all in lock-step.
                for (lane, s) in lanes.iter_mut().zip(&streams) {
                    lane.update(&s[..s.len() - 8 * BLOCK]);
                }
                let mut refs: Vec<&mut Md5Lane> = lanes.iter_mut().collect();
                let data: Vec<&[u8]> = streams.iter().map(|s| &s[s.len() - 8 * BLOCK..]).collect();
                run::<N>(&mut refs, &data, &kernel);
                for (i, (l, s)) in lanes.into_iter().zip(&streams).enumerate() {
                    assert_eq!(l.finish(), expected(i, s), "{name}, {width} lanes, lane {i}");
                }
            }
        }
        check::<4>("portable 4", portable);
        check::<8>("portable 8", portable);
        #[cfg(target_arch = "x86_64")]
        for x86 in x86::X86::all() {
            check::<8>(x86.name(), |st, d, crcs| x86.compress_blocks(st, d, crcs));
        }
    }

    #[test]
    fn lanes_of_different_histories_stay_independent() {
        let a = bytes(7, 4096 + 64);
        let b = bytes(8, 64 * 3 + 64);
        let mut la = lane(0);
        let mut lb = lane(1);
        la.update(&a[..4096]);
        lb.update(&b[..64 * 3]);
        update_lanes(&mut [&mut la, &mut lb], &[&a[4096..], &b[64 * 3..]]);
        assert_eq!(la.finish(), expected(0, &a));
        assert_eq!(lb.finish(), expected(1, &b));
    }

    #[test]
    #[should_panic(expected = "equal whole blocks")]
    fn unequal_lengths_are_refused() {
        let mut a = Md5Lane::default();
        let mut b = Md5Lane::default();
        update_lanes(&mut [&mut a, &mut b], &[&[0u8; 64], &[0u8; 128]]);
    }
}
