#!/usr/bin/env bash
# The three ways a server lets people in, measured against a real sshd (issue 18;
# docs/certificates.md):
#   1. keys by lookup: AuthorizedKeysCommand `keyportal fetch-keys`;
#   2. certificates with a live principals check: TrustedUserCAKeys +
#      AuthorizedPrincipalsCommand `keyportal fetch-principals`;
#   3. certificates with a KRL: TrustedUserCAKeys + RevokedKeys, installed by `fetch-krl`.
# For each: login latency (30 `ssh ... true` logins on 127.0.0.1), and the time from a
# revocation to the first refused login; then fetch-krl and logins with 100,000 revoked
# certificates in the KRL. The drill is the ignored test `drill_delivery_modes` in
# tests/sshd_delivery.rs, built in release mode (the portal runs inside the test process).
# Usage: bench/cert_modes.sh   (root; openssh-server and openssh-client)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -q --test sshd_delivery -- --ignored --exact drill_delivery_modes --nocapture 2>&1 |
    sed -n '/^FIGURES$/,/^$/p'
