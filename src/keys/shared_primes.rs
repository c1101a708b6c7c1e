//! Moduli that share a prime: batch GCD over a whole set of RSA moduli (Heninger, Durumeric,
//! Wustrow, Halderman, "Mining your Ps and Qs", USENIX Security 2012).
//!
//! A product tree multiplies the moduli pairwise towards P = n_1 · … · n_k; a (scaled)
//! remainder tree brings P down again and leaves (P / n_i) mod n_i at each leaf. Then
//! gcd(n_i, (P / n_i) mod n_i) = gcd(n_i, P / n_i): a value above 1 means n_i shares a prime
//! with another modulus of the set. Pure: same moduli, same answer, whatever the number
//! of worker threads.
//!
//! The arithmetic is GMP's (through `rug`): at 100,000 moduli the top nodes have tens of
//! millions of bits, where GMP's FFT multiplication and division were 4.5x faster than
//! malachite's on this machine (docs/performance.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rug::integer::Order;
use rug::{Complete, Integer};

/// A modulus that shares a prime with another one of the set (both are indexes into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPrime {
    pub index: usize,
    pub other: usize,
}

/// Every modulus of `moduli` (big-endian bytes) that shares a prime with another, with one
/// such other modulus.
pub fn shared_primes<B: AsRef<[u8]> + Sync>(moduli: &[B]) -> Vec<SharedPrime> {
    let numbers = parse(moduli);
    let flagged = shared_parts(&numbers);
    // g = gcd(n, P / n) is the part of n made of primes some other modulus has, so two moduli
    // with the same g share it: in a real set (a few pairs from one bad generator, each
    // sharing one prime) every modulus finds its partner by that value alone.
    let mut by_part: HashMap<&Integer, Vec<usize>> = HashMap::new();
    for (i, part) in &flagged {
        by_part.entry(part).or_default().push(*i);
    }
    let partner = |i: usize, part: &Integer| -> Option<usize> {
        if let Some(&j) = by_part.get(part).and_then(|g| g.iter().find(|&&j| j != i)) {
            return Some(j);
        }
        // Otherwise the first flagged modulus with a prime of g (when both primes of n are
        // shared, g = n is found nowhere else).
        flagged
            .iter()
            .find(|(j, _)| *j != i && part.gcd_ref(&numbers[*j]).complete() != 1)
            .map(|(j, _)| *j)
    };
    parallel_map(&flagged, |(i, part)| {
        partner(*i, part).map(|other| SharedPrime { index: *i, other })
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Indexes of the moduli (big-endian bytes) that share a prime with another modulus of the set.
pub fn sharing<B: AsRef<[u8]> + Sync>(moduli: &[B]) -> Vec<usize> {
    shared_parts(&parse(moduli))
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

fn parse<B: AsRef<[u8]> + Sync>(moduli: &[B]) -> Vec<Integer> {
    parallel_map(moduli, |b| {
        let n = Integer::from_digits(b.as_ref(), Order::Msf);
        // 0 would zero every product above it; 0 and 1 have no prime to share.
        if n < 2 {
            Integer::from(1)
        } else {
            n
        }
    })
}

/// Guard bits kept below each scaled remainder. Truncation errors grow at most fourfold per
/// level on the way down; at a leaf n the fraction is multiplied by n < 2^(bits - |n| - 64),
/// so the rounded cofactor is exact unless the tree is deeper than |n| / 2 + 31 levels.
const GUARD_BITS: u32 = 64;

/// The fraction frac(P / v²) of a tree node v, as `value / 2^bits` with `bits` = 2·|v| + guard.
struct Scaled {
    value: Integer,
    bits: u32,
}

/// Each modulus n that shares a prime, with gcd(n, P / n): the product of its shared primes.
fn shared_parts(moduli: &[Integer]) -> Vec<(usize, Integer)> {
    if moduli.len() < 2 {
        return Vec::new();
    }
    // The product tree, up to the level of two nodes: the root itself is never needed.
    let mut levels: Vec<Vec<Integer>> = Vec::new();
    loop {
        let below: &[Integer] = levels.last().map_or(moduli, Vec::as_slice);
        if below.len() <= 2 {
            break;
        }
        let pairs: Vec<&[Integer]> = below.chunks(2).collect();
        let next = parallel_map(&pairs, |pair| match pair {
            [a, b] => (a * b).complete(),
            [a] => a.clone(),
            _ => Integer::from(1),
        });
        levels.push(next);
    }
    let mut tree: Vec<&[Integer]> = vec![moduli];
    tree.extend(levels.iter().map(Vec::as_slice));
    let Some((&top, below)) = tree.split_last() else {
        return Vec::new();
    };
    // Bernstein's scaled remainder tree ("Scaled remainder trees", 2004): instead of P mod v²
    // each node carries frac(P / v²) to 2·|v| + guard bits, and a child a with sibling b gets
    // frac(P / a²) = frac(frac(P / v²) · b²): one multiplication where the plain remainder
    // tree divides (1.4x faster at 100,000 moduli, docs/performance.md). At the top, P = a·b,
    // so frac(P / a²) = (b mod a) / a.
    let mut scaled = parallel_map(&[0usize, 1], |&i| {
        let (a, b) = (&top[i], &top[1 - i]);
        let bits = 2 * a.significant_bits() + GUARD_BITS;
        let numerator = (b % a).complete() << bits;
        Scaled {
            value: numerator / a,
            bits,
        }
    });
    for nodes in below.iter().rev() {
        let indexes = indexes_of(nodes);
        let squares = parallel_map(&indexes, |&i| {
            (i ^ 1 < nodes.len()).then(|| nodes[i].square_ref().complete())
        });
        scaled = parallel_map(&indexes, |&i| {
            let parent = &scaled[i / 2];
            let bits = 2 * nodes[i].significant_bits() + GUARD_BITS;
            let mut value = match squares.get(i ^ 1) {
                Some(Some(sibling_square)) => (&parent.value * sibling_square).complete(),
                _ => parent.value.clone(),
            };
            if parent.bits >= bits {
                value >>= parent.bits - bits;
            } else {
                value <<= bits - parent.bits;
            }
            value.keep_bits_mut(bits);
            Scaled { value, bits }
        });
    }
    // At a leaf, frac(P / n²) = ((P / n) mod n) / n: round to that numerator, then gcd.
    let parts = parallel_map(&indexes_of(moduli), |&i| {
        let (n, s) = (&moduli[i], &scaled[i]);
        let half = Integer::from(1) << (s.bits - 1);
        let cofactor: Integer = ((&s.value * n).complete() + half) >> s.bits;
        (cofactor % n).gcd(n)
    });
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, g)| *g != 1)
        .collect()
}

fn indexes_of<T>(items: &[T]) -> Vec<usize> {
    (0..items.len()).collect()
}

/// `items.map(f)` over the machine's cores. Work is handed out one item at a time, so a level
/// of the tree with only a few huge nodes still keeps every core busy until it runs out.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(out) => out,
                // A panic in `f` is a bug; hand it on as it was.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(x: u64) -> Vec<u8> {
        let bytes = x.to_be_bytes();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(7);
        bytes[first..].to_vec()
    }

    #[test]
    fn finds_exactly_the_moduli_that_share_a_prime() {
        // 101·103 and 101·107 share 101; 109·113 and 127·131 share nothing; 137·139 twice.
        let moduli: Vec<Vec<u8>> = [
            101 * 103,
            109 * 113,
            101 * 107,
            127 * 131,
            137 * 139,
            137 * 139,
        ]
        .into_iter()
        .map(be)
        .collect();
        let found = shared_primes(&moduli);
        assert_eq!(
            found,
            vec![
                SharedPrime { index: 0, other: 2 },
                SharedPrime { index: 2, other: 0 },
                SharedPrime { index: 4, other: 5 },
                SharedPrime { index: 5, other: 4 },
            ]
        );
        assert!(shared_primes(&moduli[..2]).is_empty());
        assert!(shared_primes(&moduli[..1]).is_empty());
    }

    #[test]
    fn the_answer_does_not_depend_on_how_the_work_is_split() {
        // Odd counts leave a lone node on some levels; 1000 moduli make ten levels.
        let primes: Vec<u64> = (1_000_003u64..)
            .step_by(2)
            .filter(|p| {
                (3..)
                    .step_by(2)
                    .take_while(|d| d * d <= *p)
                    .all(|d| p % d != 0)
            })
            .take(2001)
            .collect();
        let mut moduli: Vec<Vec<u8>> = primes
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| be(c[0] * c[1]))
            .collect();
        moduli[999] = be(primes[0] * primes[2000]);
        let serial = {
            let numbers = parse(&moduli);
            (0..numbers.len())
                .filter(|&i| {
                    (0..numbers.len())
                        .any(|j| j != i && numbers[i].gcd_ref(&numbers[j]).complete() != 1)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(serial, vec![0, 999]);
        assert_eq!(sharing(&moduli), serial);
        assert_eq!(sharing(&moduli[..999]), Vec::<usize>::new());
    }
}
