// Tests of the process list used by "Attach to Process": a fake /proc tree and the real one.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { listProcesses, parseCmdline, parseRealUid, processPickItem } from '../../src/processes';

function fakeProcess(root: string, pid: number, uid: number, argv: string[], comm: string): void {
  const directory = path.join(root, String(pid));
  mkdirSync(directory);
  writeFileSync(path.join(directory, 'status'), `Name:\t${comm}\nState:\tS\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
  writeFileSync(path.join(directory, 'cmdline'), argv.map((argument) => `${argument}\0`).join(''));
  writeFileSync(path.join(directory, 'comm'), `${comm}\n`);
}

test('parsers', () => {
  assert.equal(parseRealUid('Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t5\n'), 1000);
  assert.equal(parseRealUid('Name:\tx\n'), undefined);
  assert.equal(parseCmdline(Buffer.from('./app\0--port\x008080\0')), './app --port 8080');
  assert.equal(parseCmdline(Buffer.from('')), '');
});

test('fake /proc: same user only, no kernel threads, excluded pids left out, newest first', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'hot-lsp-proc-'));
  try {
    fakeProcess(root, 10, 1000, ['/usr/bin/app', '--x'], 'app');
    fakeProcess(root, 200, 1000, ['./server'], 'server');
    fakeProcess(root, 30, 0, ['/sbin/init'], 'init');
    fakeProcess(root, 2, 1000, [], 'kthreadd');
    fakeProcess(root, 77, 1000, ['node', 'extension-host'], 'node');
    mkdirSync(path.join(root, 'self'));
    writeFileSync(path.join(root, 'uptime'), '1 1');
    const processes = await listProcesses({ procRoot: root, uid: 1000, excludePids: [77] });
    assert.deepEqual(processes, [
      { pid: 200, name: 'server', cmdline: './server' },
      { pid: 10, name: 'app', cmdline: '/usr/bin/app --x' },
    ]);
    assert.deepEqual(processPickItem(processes[1]), { label: '10  app', description: '/usr/bin/app --x', pid: 10 });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('real /proc lists a child process with its arguments but not ourselves', async () => {
  const child = spawn('sleep', ['37.5'], { stdio: 'ignore' });
  try {
    assert.ok(child.pid !== undefined);
    const processes = await listProcesses();
    const found = processes.find((info) => info.pid === child.pid);
    assert.deepEqual(found, { pid: child.pid, name: 'sleep', cmdline: 'sleep 37.5' });
    assert.equal(processes.find((info) => info.pid === process.pid), undefined);
  } finally {
    child.kill();
  }
});
