// What the browser benchmarks share: a random source file, headless Chromium started the same
// way, and medians.

import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';

/** Bytes in a MiB. */
export const MiB = 1024 * 1024;

/** Writes `size` random bytes to `path`, 8 MiB at a time. */
export function writeRandomFile(path, size) {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(8 * MiB);
  for (let left = size; left > 0; left -= chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(left, chunk.length));
  }
  closeSync(fd);
}

/** Headless Chromium at `executablePath` (playwright-core's `chromium`), without background work
 * that would compete with the measurement. */
export function launchChromium(chromium, executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** The median of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
