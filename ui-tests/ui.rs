//! Compile-time tests of `#[mcp_tools]`, `#[mcp_tool]` and `#[derive(Roles)]`: programs that
//! must compile (`pass/`) and programs that must fail with exactly the recorded errors
//! (`fail/**`, next to their `.stderr`).
//!
//! The `.stderr` files are rustc's output, which changes between releases, so they are only
//! checked with the toolchain they were written with. Regenerate them with
//! `TRYBUILD=overwrite cargo test -p mcp-gatekeeper --test ui` and review the diff.

use std::process::Command;

/// The stable release the `.stderr` files were written with.
const PINNED_RUSTC: &str = "1.95";

#[test]
fn ui() {
    check_toolchain();
    let t = trybuild::TestCases::new();
    t.pass("../ui-tests/pass/*.rs");
    t.compile_fail("../ui-tests/fail/**/*.rs");
}

/// Fails (rather than silently skipping) on any other compiler than the pinned one.
fn check_toolchain() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{} --version`: {e}", rustc.to_string_lossy()));
    let version = String::from_utf8_lossy(&output.stdout);
    let release = version.split_whitespace().nth(1).unwrap_or_default();
    let pinned = release
        .strip_prefix(PINNED_RUSTC)
        .is_some_and(|rest| rest.starts_with('.') && !rest.contains('-'));
    assert!(
        pinned,
        "the ui tests' .stderr files were written with rustc {PINNED_RUSTC}.x stable, but this is \
         `{}`: run them with that toolchain (`cargo +{PINNED_RUSTC} test --test ui`), or move \
         the pin and regenerate them with `TRYBUILD=overwrite`",
        version.trim()
    );
}
