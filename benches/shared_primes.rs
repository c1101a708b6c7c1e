//! Time of the shared-prime batch GCD (product tree, remainder tree, one gcd per modulus, a
//! partner for each modulus found) on N RSA-sized moduli (default 100,000 of 3072 bits):
//! `cargo bench --bench shared_primes -- [N] [BITS]`. The moduli are products of two random odd halves: the trees cost the same for any
//! numbers of that size. Random halves share small factors, so most are reported as sharing,
//! and each of them needs a partner: more work than a real set of keys makes.

use std::time::Instant;

use keyportal::keys::shared_primes::shared_primes;
use rug::integer::Order;
use rug::{Complete, Integer};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(100_000);
    let bits = args.get(1).copied().unwrap_or(3072);
    let limbs = bits / 64;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let half = |next: &mut dyn FnMut() -> u64| {
        let mut l: Vec<u64> = (0..limbs / 2).map(|_| next()).collect();
        l[0] |= 1;
        if let Some(top) = l.last_mut() {
            *top |= 1 << 63;
        }
        Integer::from_digits(&l, Order::Lsf)
    };
    let shared = half(&mut next);
    let product = |a: &Integer, b: &Integer| (a * b).complete().to_digits::<u8>(Order::Msf);
    let mut moduli: Vec<Vec<u8>> = (0..n)
        .map(|_| product(&half(&mut next), &half(&mut next)))
        .collect();
    // Three moduli share one factor.
    for i in [7, n / 2, n - 3] {
        if i < n {
            moduli[i] = product(&shared, &half(&mut next));
        }
    }
    let started = Instant::now();
    let found: Vec<usize> = shared_primes(&moduli).iter().map(|f| f.index).collect();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "batch gcd: {n} moduli of {bits} bits in {secs:.1} s ({} share a factor; 3 planted, the rest share small factors of random halves); planted found: {}",
        found.len(),
        [7, n / 2, n - 3].iter().all(|i| *i >= n || found.contains(i))
    );
}
