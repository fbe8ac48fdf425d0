// Running third-party command-line clients (MCP Inspector, mcp-remote) as child processes that
// can never hang a test: every wait has a deadline, after which the whole process group is
// killed, and the output seen so far is kept for the report.

import { spawn } from 'node:child_process';

/** Starts `node <script> ...args` (the Node running this file) in its own process group. */
export function startNode(script, args, { env = {}, stdin = 'ignore' } = {}) {
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: [stdin, 'pipe', 'pipe'],
    detached: true,
  });
  const run = { child, stdout: '', stderr: '', started: Date.now(), exit: null };
  child.stdout.setEncoding('utf8').on('data', (text) => (run.stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text) => (run.stderr += text));
  run.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      run.exit = { code, signal, ms: Date.now() - run.started };
      resolve(run.exit);
    });
  });
  return run;
}

/** Kills the process group of `run` (the client and anything it started). */
export function kill(run) {
  if (run.exit) return;
  try {
    process.kill(-run.child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Resolves with `promise`'s value, or with `undefined` once `ms` have passed. */
export function within(ms, promise) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs a client to its end, or kills it after `ms`; returns its exit and output. */
export async function runNode(script, args, options = {}, ms = 30000) {
  const run = startNode(script, args, options);
  const exit = await within(ms, run.exited);
  if (!exit) {
    kill(run);
    await run.exited;
  }
  return { ...run.exit, timedOut: !exit, stdout: run.stdout, stderr: run.stderr };
}

/**
 * The JSON-RPC messages a stdio MCP server (mcp-remote) wrote so far, one per line; lines that
 * are not JSON are skipped.
 */
export function messages(run) {
  return run.stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line)];
      } catch {
        return [];
      }
    });
}

/** Waits up to `ms` for the answer to request `id` (or for the process to end). */
export async function answer(run, id, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = messages(run).find((m) => m.id === id && ('result' in m || 'error' in m));
    if (found || run.exit || Date.now() > deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The last `lines` lines of `text`, for a report. */
export function tail(text, lines = 15) {
  return text.trim().split('\n').slice(-lines).join('\n');
}
