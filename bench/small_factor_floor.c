// How fast can "does n have a prime factor <= 65537?" be decided with GMP, per RSA modulus?
// Issue 15's throughput condition needs it far below what this measures; see
// docs/performance.md, "Compromised-key checks (issue 15): what they cost".
//   gcc -O2 bench/small_factor_floor.c -o /tmp/sff -lgmp && /tmp/sff BITS COUNT GROUP
// Per key: P mod n, then gcd(n, that), with P the product of the primes up to 65537.
// Batched: the moduli multiplied in groups of GROUP (a product tree), each group's product
// multiplied into an accumulator mod P, one gcd with P at the end (a gcd > 1 would then send
// the batch to the per-key check; random moduli almost all have small factors, which does not
// change the timing of either method).
#include <gmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s BITS COUNT GROUP\n", argv[0]); return 2; }
  int bits = atoi(argv[1]), count = atoi(argv[2]), group = atoi(argv[3]);
  gmp_randstate_t rand;
  gmp_randinit_default(rand);
  mpz_t P, acc, t, *n = malloc(sizeof(mpz_t) * count), *tree = malloc(sizeof(mpz_t) * group);
  mpz_inits(P, acc, t, NULL);
  mpz_primorial_ui(P, 65537);
  for (int i = 0; i < count; i++) {
    mpz_init(n[i]);
    mpz_urandomb(n[i], rand, bits);
    mpz_setbit(n[i], bits - 1);
    mpz_setbit(n[i], 0);
  }
  for (int i = 0; i < group; i++) mpz_init(tree[i]);

  double t0 = now();
  for (int i = 0; i < count; i++) { mpz_mod(t, P, n[i]); mpz_gcd(t, t, n[i]); }
  double per_key = (now() - t0) / count * 1e6;

  t0 = now();
  double in_tree = 0;
  mpz_set_ui(acc, 1);
  for (int i = 0; i < count; i += group) {
    double a = now();
    int m = count - i < group ? count - i : group;
    for (int j = 0; j < m; j++) mpz_set(tree[j], n[i + j]);
    while (m > 1) {
      int k = 0;
      for (int j = 0; j + 1 < m; j += 2) mpz_mul(tree[k++], tree[j], tree[j + 1]);
      if (m & 1) mpz_set(tree[k++], tree[m - 1]);
      m = k;
    }
    in_tree += now() - a;
    mpz_mul(acc, acc, tree[0]);
    mpz_mod(acc, acc, P);
  }
  mpz_gcd(t, acc, P);
  double batched = (now() - t0) / count * 1e6;
  printf("%d-bit moduli, %d of them: per key %.1f us; batched in groups of %d %.1f us "
         "(product trees %.1f us of it)\n",
         bits, count, per_key, group, batched, in_tree / count * 1e6);
  return 0;
}
