//! Ed25519 public key validity without a square root.
//!
//! A 32-byte encoding is a point iff y < p and x² = (y² − 1) / (d·y² + 1) has a solution mod p.
//! d·y² + 1 is never 0 (−1/d is not a square), so a solution exists iff u = y² − 1 is 0 or u·v
//! is a square: one Legendre symbol instead of the field exponentiation that decompression
//! spends on the square root. The eight small-order points have only five y values, refused by
//! comparison. curve25519-dalek's `decompress` + `is_small_order` is the reference this module
//! is tested against (20,000 random encodings and the edge cases).
//!
//! The Legendre symbol is a binary Jacobi-symbol loop written here: crypto-bigint 0.7.11's
//! constant-time `jacobi_symbol_vartime` measured slower than dalek's square root (9.2 µs vs
//! 5.7 µs per key, docs/performance.md). Inputs are public keys, so variable time is fine.

use crypto_bigint::modular::ConstMontyParams;
use crypto_bigint::{const_monty_form, const_monty_params, U256};

const_monty_params!(
    Curve25519Prime,
    U256,
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed",
    "p = 2^255 - 19"
);
const_monty_form!(Fe, Curve25519Prime);

/// p = 2^255 − 19, little-endian 64-bit limbs.
const P: [u64; 4] = [
    0xffff_ffff_ffff_ffed,
    u64::MAX,
    u64::MAX,
    0x7fff_ffff_ffff_ffff,
];

/// The Edwards curve constant d = −121665/121666 mod p.
const D: Fe = Fe::new(&U256::from_be_hex(
    "52036cee2b6ffe738cc740797779e89800700a4d4141d8ab75eb4dca135978a3",
));

/// y coordinates (little-endian, canonical) of the eight small-order points: order 1 (y = 1),
/// order 2 (y = −1), order 4 (y = 0) and order 8 (y = ±y₈).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    le_from_be_hex("0000000000000000000000000000000000000000000000000000000000000001"),
    le_from_be_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec"),
    le_from_be_hex("05fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826"),
    le_from_be_hex("7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7"),
];

const fn le_from_be_hex(hex: &str) -> [u8; 32] {
    let be = U256::from_be_hex(hex).to_be_bytes();
    let mut le = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        le[i] = be.as_slice()[31 - i];
        i += 1;
    }
    le
}

/// Why an encoding is not a usable Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ed25519Fault {
    NonCanonical,
    NotOnCurve,
    SmallOrder,
}

pub fn check_point(bytes: &[u8; 32]) -> Result<(), Ed25519Fault> {
    let mut y_bytes = *bytes;
    y_bytes[31] &= 0x7f;
    // y >= p: only the 19 values from p to 2^255 - 1, whose bytes 1..31 are all ff (7f on top).
    if y_bytes[31] == 0x7f && y_bytes[1..31].iter().all(|b| *b == 0xff) && y_bytes[0] >= 0xed {
        return Err(Ed25519Fault::NonCanonical);
    }
    if SMALL_ORDER_Y.contains(&y_bytes) {
        // Includes x = 0 with the sign bit set (y = ±1), the other non-canonical form.
        return Err(Ed25519Fault::SmallOrder);
    }
    let y = Fe::new(&U256::from_le_slice(&y_bytes));
    let y2 = y.square();
    let u = y2.sub(&Fe::ONE);
    let v = D.mul(&y2).add(&Fe::ONE);
    let uv = u.mul(&v).retrieve();
    let mut limbs = [0u64; 4];
    for (limb, word) in limbs.iter_mut().zip(uv.as_words()) {
        *limb = *word;
    }
    // u = 0 (y = ±1) was refused above as small order, so uv is not 0 here.
    if jacobi(limbs, P) == 1 {
        Ok(())
    } else {
        Err(Ed25519Fault::NotOnCurve)
    }
}

/// The Jacobi symbol (a | n) for odd n > a ≥ 0, by the binary algorithm: strip factors of two
/// (flipping the sign when n ≡ 3, 5 mod 8), swap by quadratic reciprocity when a < n (flipping
/// when both are ≡ 3 mod 4), subtract. Runs on four 64-bit limbs while either value needs
/// them, then three, two and one: each stage costs what its width costs.
///
/// The steps are written without data-dependent branches (masks instead of `if a < n`): each
/// key takes its own path through ~250 steps, which a branch predictor cannot learn, and the
/// branching form measured 1.78 µs per stored key over 4,096 different keys against 0.82 µs
/// for one key validated again and again (benches/validator.rs, docs/performance.md).
fn jacobi(a: [u64; 4], n: [u64; 4]) -> i8 {
    if a == [0; 4] {
        return 0;
    }
    // Bit 1 set: the symbol's sign is flipped.
    let mut flips = 0u64;
    let mut a = a;
    strip_twos(&mut a, &n, &mut flips);
    let Some((a, n)) = jacobi_wide(a, n, &mut flips) else {
        return 0;
    };
    let Some((a, n)) = jacobi_wide([a[0], a[1], a[2]], [n[0], n[1], n[2]], &mut flips) else {
        return 0;
    };
    let Some((a, n)) = jacobi_wide([a[0], a[1]], [n[0], n[1]], &mut flips) else {
        return 0;
    };
    jacobi_u64(a[0], n[0], flips)
}

/// Binary Jacobi steps on N limbs (a, n odd) until both fit in N − 1 limbs; `None` when a
/// reaches n (> 1 here: they share a factor, the symbol is 0).
fn jacobi_wide<const N: usize>(
    mut a: [u64; N],
    mut n: [u64; N],
    flips: &mut u64,
) -> Option<([u64; N], [u64; N])> {
    while (a[N - 1] | n[N - 1]) != 0 {
        // d = a − n, and whether that borrowed (a < n: the step swaps them).
        let mut d = [0u64; N];
        let mut borrow = 0u64;
        for i in 0..N {
            let (x, b1) = a[i].overflowing_sub(n[i]);
            let (x, b2) = x.overflowing_sub(borrow);
            d[i] = x;
            borrow = u64::from(b1 | b2);
        }
        let swap = borrow.wrapping_neg();
        *flips ^= swap & a[0] & n[0] & 2;
        // n = min(a, n); d = |a − n| (negated when it borrowed: !d + 1).
        let mut carry = borrow;
        for i in 0..N {
            n[i] ^= swap & (n[i] ^ a[i]);
            let (x, c) = (d[i] ^ swap).overflowing_add(carry);
            d[i] = x;
            carry = u64::from(c);
        }
        if d[0] == 0 {
            // 64 or more factors of two (rare), or a = n.
            if d.iter().all(|l| *l == 0) {
                return None;
            }
            strip_twos(&mut d, &n, flips);
            a = d;
            continue;
        }
        // d is even (a difference of odd numbers) and its low limb is not 0: 1 ≤ k ≤ 63.
        let k = d[0].trailing_zeros();
        *flips ^= (u64::from(k) << 1) & (n[0] ^ (n[0] >> 1)) & 2;
        for i in 0..N - 1 {
            a[i] = (d[i] >> k) | (d[i + 1] << (64 - k));
        }
        a[N - 1] = d[N - 1] >> k;
    }
    Some((a, n))
}

/// Divides a (> 0) by its largest power of two, flipping the sign for each factor 2 when
/// n ≡ 3, 5 mod 8.
fn strip_twos<const N: usize>(a: &mut [u64; N], n: &[u64; N], flips: &mut u64) {
    let mut k = 0;
    for limb in a.iter() {
        if *limb != 0 {
            k += limb.trailing_zeros();
            break;
        }
        k += 64;
    }
    if k == 0 {
        return;
    }
    if k & 1 == 1 && matches!(n[0] & 7, 3 | 5) {
        *flips ^= 2;
    }
    let limbs = (k / 64) as usize;
    let bits = k % 64;
    if limbs > 0 {
        for i in 0..N {
            a[i] = if i + limbs < N { a[i + limbs] } else { 0 };
        }
    }
    if bits > 0 {
        for i in 0..N - 1 {
            a[i] = (a[i] >> bits) | (a[i + 1] << (64 - bits));
        }
        a[N - 1] >>= bits;
    }
}

/// The last stage, on one limb each (a, n odd), with the sign flips so far.
fn jacobi_u64(mut a: u64, mut n: u64, mut flips: u64) -> i8 {
    while a != n {
        let (d, borrow) = a.overflowing_sub(n);
        let swap = u64::from(borrow).wrapping_neg();
        flips ^= swap & a & n & 2;
        n ^= swap & (n ^ a);
        let d = (d ^ swap).wrapping_sub(swap);
        let k = d.trailing_zeros();
        flips ^= (u64::from(k) << 1) & (n ^ (n >> 1)) & 2;
        a = d >> k;
    }
    match (n, flips & 2) {
        (1, 0) => 1,
        (1, _) => -1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;

    /// The reference: curve25519-dalek decompression, canonical re-encoding, small order.
    fn reference(bytes: &[u8; 32]) -> Result<(), Ed25519Fault> {
        let point = CompressedEdwardsY(*bytes)
            .decompress()
            .ok_or(Ed25519Fault::NotOnCurve)?;
        if point.is_small_order() {
            return Err(Ed25519Fault::SmallOrder);
        }
        if point.compress().0 != *bytes {
            return Err(Ed25519Fault::NonCanonical);
        }
        Ok(())
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn small_order_y_values_are_those_of_the_eight_torsion_points() {
        let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut y = p.compress().0;
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort();
        ys.dedup();
        let mut ours = SMALL_ORDER_Y.to_vec();
        ours.sort();
        assert_eq!(ys, ours);
    }

    #[test]
    fn agrees_with_curve25519_dalek_on_edge_and_random_encodings() {
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for low in [0xeb_u8, 0xec, 0xed, 0xee, 0xfe, 0xff, 0x00, 0x01, 0x02] {
            for top in [0x7f_u8, 0xff, 0x00, 0x80] {
                let mut b = [0xff_u8; 32];
                b[0] = low;
                b[31] = top;
                cases.push(b);
                let mut z = [0u8; 32];
                z[0] = low;
                z[31] = top;
                cases.push(z);
            }
        }
        for y in SMALL_ORDER_Y {
            let mut signed = y;
            signed[31] |= 0x80;
            cases.extend([y, signed]);
        }
        // Real points too: multiples of the base point, and random encodings (about half are points).
        for i in 1..2000u64 {
            let p = curve25519_dalek::constants::ED25519_BASEPOINT_POINT
                * curve25519_dalek::Scalar::from(i);
            cases.push(p.compress().0);
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                chunk.copy_from_slice(&xorshift(&mut state).to_le_bytes());
            }
            cases.push(b);
        }
        let mut on_curve = 0;
        for b in &cases {
            let expected = reference(b);
            let ours = check_point(b);
            assert_eq!(
                ours.is_ok(),
                expected.is_ok(),
                "{b:02x?}: ours {ours:?}, reference {expected:?}"
            );
            if ours == Err(Ed25519Fault::NotOnCurve) {
                assert_eq!(expected, Err(Ed25519Fault::NotOnCurve), "{b:02x?}");
            }
            on_curve += usize::from(expected.is_ok());
        }
        assert!(
            on_curve > 11_000,
            "about half of random encodings are points; got {on_curve}"
        );
    }

    /// The staged loop against crypto-bigint's Jacobi symbol, on random odd moduli of every
    /// width the stages switch at (256, 192, 128 and 64 bits) and random a < n.
    #[test]
    fn jacobi_agrees_with_crypto_bigint_at_every_width() {
        use crypto_bigint::{JacobiSymbol, Odd};
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..8_000 {
            let width = [4, 3, 2, 1][i % 4];
            let mut n = [0u64; 4];
            let mut a = [0u64; 4];
            for l in 0..width {
                n[l] = xorshift(&mut state);
                a[l] = xorshift(&mut state);
            }
            n[0] |= 1;
            // Sometimes a shares factors with n, or is a multiple of a power of two.
            if i % 7 == 0 {
                a = [0, a[1], a[2], 0];
            }
            // Sometimes a − n has a zero low limb (64 or more factors of two at once).
            if i % 5 == 0 && width > 1 {
                a[0] = n[0];
                a[width - 1] = n[width - 1] >> 1;
            }
            let (nn, aa) = (U256::from_words(n), U256::from_words(a));
            let aa = aa.rem_vartime(&crypto_bigint::NonZero::new(nn).unwrap());
            let expected = match aa.jacobi_symbol_vartime(&Odd::new(nn).unwrap()) {
                JacobiSymbol::Zero => 0,
                JacobiSymbol::One => 1,
                JacobiSymbol::MinusOne => -1,
            };
            let mut reduced = [0u64; 4];
            reduced.copy_from_slice(aa.as_words());
            assert_eq!(jacobi(reduced, n), expected, "({reduced:x?} | {n:x?})");
        }
    }

    /// a and n sharing an odd factor of one to four limbs: the loop meets a = n in that stage
    /// (a wide one from two limbs up), and the symbol is 0.
    #[test]
    fn jacobi_is_zero_for_a_large_shared_factor() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for limbs in 1..=4 {
            for _ in 0..300 {
                // g: `limbs` limbs, the top one of 30 bits; m < 2^30: g·m < 2^252.
                let mut g = [0u64; 4];
                for l in g.iter_mut().take(limbs) {
                    *l = xorshift(&mut state);
                }
                g[limbs - 1] = (g[limbs - 1] >> 34) | 1 << 29;
                g[0] |= 1;
                let m = (xorshift(&mut state) >> 34) | 3;
                let r = xorshift(&mut state) % m;
                let g = U256::from_words(g);
                let n = g.wrapping_mul(&U256::from_u64(m));
                let a = g.wrapping_mul(&U256::from_u64(r));
                assert_eq!(jacobi(*a.as_words(), *n.as_words()), 0, "({a} | {n})");
            }
        }
    }

    /// The Jacobi loop against Euler's criterion computed naively on small moduli.
    #[test]
    fn jacobi_matches_eulers_criterion_for_small_primes() {
        for n in [3u64, 5, 7, 11, 13, 97, 101, 65_537, 1_000_003] {
            for a in 0..200u64.min(n) {
                let mut r = 1u128;
                let mut base = u128::from(a);
                let mut e = (n - 1) / 2;
                while e > 0 {
                    if e & 1 == 1 {
                        r = r * base % u128::from(n);
                    }
                    base = base * base % u128::from(n);
                    e >>= 1;
                }
                let euler = match r {
                    0 => 0,
                    1 => 1,
                    _ => -1,
                };
                assert_eq!(jacobi([a, 0, 0, 0], [n, 0, 0, 0]), euler, "({a}|{n})");
            }
        }
    }
}
