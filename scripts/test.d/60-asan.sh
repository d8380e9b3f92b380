#!/usr/bin/env bash
# The C stress and API contract tests under AddressSanitizer (scripts/asan.sh).
set -euo pipefail
exec "$(dirname "$0")/../asan.sh"
