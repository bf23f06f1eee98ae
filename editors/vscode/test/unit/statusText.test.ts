// Tests of the human-readable status: status bar text, swap summary, durations.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StatusParams } from '../../src/protocol';
import {
  describeStatus,
  formatMicros,
  formatState,
  formatSwap,
  normalizeOutput,
  statusBarText,
} from '../../src/statusText';

function status(overrides: Partial<StatusParams> = {}): StatusParams {
  return {
    workspace: 'file:///work/app',
    state: 'running',
    pid: 4242,
    exitCode: null,
    signal: null,
    lastSwap: null,
    message: null,
    ...overrides,
  };
}

const swap = {
  seq: 7,
  file: 'file:///work/app/src/game%20loop.c',
  swapped: ['update', 'render', 'tick'],
  added: [],
  skipped: 12,
  micros: { compile: 48_200, link: 900, swap: 412 },
};

test('durations', () => {
  assert.equal(formatMicros(85), '85 µs');
  assert.equal(formatMicros(412), '0.4 ms');
  assert.equal(formatMicros(9_949), '9.9 ms');
  assert.equal(formatMicros(48_200), '48 ms');
  assert.equal(formatMicros(1_340_000), '1.3 s');
  assert.equal(formatMicros(Number.NaN), '? ms');
});

test('swap summary', () => {
  assert.equal(formatSwap(swap), 'swapped 3 functions in 0.4 ms');
  assert.equal(formatSwap({ ...swap, swapped: ['f'] }), 'swapped 1 function in 0.4 ms');
  assert.equal(formatSwap({ ...swap, swapped: ['f'], added: ['g', 'h'] }), 'swapped 1 function, added 2 functions in 0.4 ms');
  assert.equal(formatSwap({ ...swap, swapped: [], added: ['g'] }), 'added 1 function in 0.4 ms');
  assert.equal(formatSwap({ ...swap, swapped: [], added: [] }), 'no changed functions');
});

test('states', () => {
  assert.equal(formatState(status()), 'running (pid 4242)');
  assert.equal(formatState(status({ state: 'exited', pid: null, exitCode: 3 })), 'exited (code 3)');
  assert.equal(formatState(status({ state: 'exited', pid: null, signal: 11 })), 'exited (signal 11)');
  assert.equal(formatState(status({ state: 'failed', message: 'build failed' })), 'failed: build failed');
  assert.equal(formatState(status({ state: 'idle', pid: null })), 'idle');
});

test('status bar text', () => {
  assert.equal(statusBarText(undefined), '$(circle-outline) hot-lsp');
  assert.equal(statusBarText(status()), '$(flame) hot-lsp: running (pid 4242)');
  assert.equal(
    statusBarText(status({ lastSwap: swap })),
    '$(flame) hot-lsp: running (pid 4242) · swapped 3 functions in 0.4 ms',
  );
  assert.equal(statusBarText(status({ state: 'failed', message: 'a long message' })), '$(error) hot-lsp: failed');
});

test('details list the phases, names and file', () => {
  const lines = describeStatus(status({ lastSwap: swap }));
  assert.equal(lines[0], 'Program: running (pid 4242)');
  assert.equal(lines[1], 'Last swap #7 (game loop.c): swapped 3 functions in 0.4 ms');
  assert.equal(lines[2], '  compile 48 ms, link 0.9 ms, swap 0.4 ms');
  assert.ok(lines.includes('  swapped: update, render, tick'));
  assert.ok(lines.includes('  unchanged: 12 atoms'));
  assert.equal(lines[lines.length - 1], 'Workspace: file:///work/app');
  assert.match(describeStatus(status()).join('\n'), /No swap yet/);
});

test('pty line endings are normalised', () => {
  assert.equal(normalizeOutput('a\r\nb\r\n'), 'a\nb\n');
  assert.equal(normalizeOutput('partial'), 'partial');
});
