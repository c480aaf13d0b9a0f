// Reads what `hoist serve --dev` prints when it is ready: `listening on http://ADDR`,
// `store: http://ADDR …` and `dev token: TOKEN`, each at the start of a line, on stdout or
// stderr. Shared by the e2e tests and bench/browser_vs_put.mjs.

import { createInterface } from 'node:readline';

/**
 * Waits for `proc` (a spawned `hoist serve --dev`) to print its address and token.
 * @param {import('node:child_process').ChildProcess} proc
 * @param {{ needStore?: boolean, timeoutMs?: number, name?: string }} [options]
 * @returns {Promise<{ origin: string, store: string | null, token: string }>}
 */
export function waitForServe(proc, { needStore = false, timeoutMs = 60_000, name = 'hoist serve' } = {}) {
  const seen = [];
  const out = { origin: null, store: null, token: null };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} was not ready within ${timeoutMs / 1000} s; output:\n${seen.join('\n')}`)), timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready; output:\n${seen.join('\n')}`));
    });
    for (const stream of [proc.stdout, proc.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        seen.push(line);
        // Only lines that start so: a store's own "listening" line must not be taken for the
        // service's. The store line comes first.
        out.origin ??= /^listening on (http:\/\/\S+)/.exec(line)?.[1] ?? null;
        out.store ??= /^store: (http:\/\/\S+)/.exec(line)?.[1] ?? null;
        out.token ??= /^dev token: (\S+)/.exec(line)?.[1] ?? null;
        if (out.origin && out.token && (out.store || !needStore)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
    }
  });
}
