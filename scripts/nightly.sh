# Sourced by the steps that need nightly Rust features (sanitizers, fuzzing).
# Sets RUST_TOOLCHAIN_ARG: "+nightly" when a nightly toolchain is installed
# or can be; else "" with RUSTC_BOOTSTRAP=1 exported, which lets the
# machine's own toolchain take the -Z flags (its rust-std ships the
# sanitizer runtimes), for machines where no other toolchain can be fetched.
if rustup run nightly rustc --version >/dev/null 2>&1; then
    RUST_TOOLCHAIN_ARG=+nightly
elif command -v rustup >/dev/null 2>&1 &&
    timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    echo "installed the nightly toolchain (minimal profile)"
    RUST_TOOLCHAIN_ARG=+nightly
else
    echo "no nightly toolchain, and none could be installed: using $(rustc --version) with RUSTC_BOOTSTRAP=1"
    RUST_TOOLCHAIN_ARG=
    export RUSTC_BOOTSTRAP=1
fi
