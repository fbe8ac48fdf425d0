// One line per check, `ok - <name>` / `not ok - <name>` (TAP-like), and a non-zero exit code
// when any check failed. The Rust test (tests/oauth/e2e.rs) shows this output on failure.

let failures = 0;

/** Runs one check; prints its line (with the error indented below it on failure). */
export async function check(name, fn) {
  try {
    const value = await fn();
    console.log(`ok - ${name}`);
    return { ok: true, value };
  } catch (error) {
    failures += 1;
    console.log(`not ok - ${name}`);
    const detail = error?.stack ?? String(error);
    console.log(detail.split('\n').map((line) => `  # ${line}`).join('\n'));
    return { ok: false, error };
  }
}

/** Runs a check the rest of the script depends on: on failure, stops with exit code 1. */
export async function step(name, fn) {
  const result = await check(name, fn);
  if (!result.ok) finish('stopped: a later check depends on this one');
  return result.value;
}

/** Prints a summary and exits: 0 only when every check passed. */
export function finish(note) {
  if (note) console.log(`# ${note}`);
  console.log(failures === 0 ? '# all checks passed' : `# ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
}

/** Fails the whole script after `seconds` (the Rust test's own timeout would lose the output). */
export function deadline(seconds) {
  setTimeout(() => {
    console.log(`not ok - finished within ${seconds}s`);
    failures += 1;
    finish('timed out');
  }, seconds * 1000).unref();
}

/** `process.env[name]`, or a clear failure. */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.log(`not ok - environment variable ${name} is set`);
    process.exit(2);
  }
  return value;
}
