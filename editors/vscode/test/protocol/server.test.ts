// Protocol tests against the real `hot-lsp --stdio`: the messages vscode-languageclient exchanges
// with the server, driven through vscode-languageserver-protocol over stdio, with a real C
// fixture program compiled by cc, launched, edited and hot-swapped.

import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DidChangeConfigurationNotification } from 'vscode-languageserver-protocol/node';
import { SERVER_COMMANDS } from '../../src/protocol';
import {
  LspSession,
  RecordedNotification,
  STARTUP_TIMEOUT_MS,
  SWAP_TIMEOUT_MS,
  fileUri,
  makeFixtureWorkspace,
  processAlive,
  temporaryDirectory,
} from './lspSession';

const TEST_TIMEOUT_MS = 240_000;
const FIXTURE_COMPILE_COMMAND = 'cc -O0 -g -c {file} -o {output}';

function removeDirectory(directory: string | undefined): void {
  if (directory !== undefined) {
    rmSync(directory, { recursive: true, force: true });
  }
}

function sameUri(a: unknown, b: string): boolean {
  return typeof a === 'string' && a.replace(/\/$/, '') === b.replace(/\/$/, '');
}

function isStatus(workspace: string, predicate: (params: any) => boolean) {
  return (notification: RecordedNotification) =>
    notification.method === 'hot-lsp/status' && sameUri(notification.params?.workspace, workspace) && predicate(notification.params);
}

function diagnosticsFor(uri: string, predicate: (diagnostics: any[]) => boolean) {
  return (notification: RecordedNotification) =>
    notification.method === 'textDocument/publishDiagnostics' &&
    sameUri(notification.params?.uri, uri) &&
    Array.isArray(notification.params?.diagnostics) &&
    predicate(notification.params.diagnostics);
}

/** Replaces the body of current_value() in the fixture source and returns the 0-based line. */
function setReturnStatement(source: string, statement: string): { text: string; line: number } {
  const lines = source.split('\n');
  const line = lines.findIndex((text) => /^\s*return .*;?\s*$/.test(text) && !/return 0;/.test(text));
  assert.ok(line >= 0, 'the fixture has no `return N;` line in current_value');
  lines[line] = `    ${statement}`;
  return { text: lines.join('\n'), line };
}

/** The tick numbers printed with a given value, in order. */
function ticksWithValue(output: string, value: number): number[] {
  return [...output.matchAll(new RegExp(`value=${value} tick=(\\d+)`, 'g'))].map((match) => Number(match[1]));
}

/** Waits (polling /proc, bounded) until a pid is gone. */
async function waitUntilGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!processAlive(pid)) {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !processAlive(pid);
}

describe('an idle workspace (no hot-lsp.toml, no client configuration)', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let session: LspSession;
  const marker = () => path.join(root, 'compile-command-ran');

  before(async () => {
    root = temporaryDirectory('hot-lsp-idle-');
    writeFileSync(path.join(root, 'main.c'), 'int main(void) { return 0; }\n');
    // A compile database whose "compiler" would leave a marker: opening this workspace must
    // never run it (DESIGN.md 2: a cloned repository must not make hot-lsp run anything).
    writeFileSync(
      path.join(root, 'compile_commands.json'),
      JSON.stringify([{ directory: root, file: path.join(root, 'main.c'), arguments: ['touch', marker()] }]),
    );
    session = new LspSession(root);
  });

  after(() => {
    session?.kill();
    removeDirectory(root);
  });

  it('initialize advertises save notifications, the commands and no editing features', async () => {
    const result = await session.initialize();
    const capabilities = result.capabilities;
    assert.equal(result.serverInfo?.name, 'hot-lsp');

    const sync = capabilities.textDocumentSync;
    assert.ok(typeof sync === 'object' && sync !== null, `textDocumentSync must be options, got ${JSON.stringify(sync)}`);
    assert.equal(sync.openClose, true);
    const save = sync.save;
    assert.ok(save === true || (typeof save === 'object' && !save.includeText), `save: ${JSON.stringify(save)}`);

    const commands = capabilities.executeCommandProvider?.commands ?? [];
    for (const command of Object.values(SERVER_COMMANDS)) {
      assert.ok(commands.includes(command), `executeCommandProvider lacks ${command}: ${JSON.stringify(commands)}`);
    }
    assert.equal(capabilities.completionProvider, undefined);
    assert.ok(!capabilities.hoverProvider, 'hot-lsp must not provide hover (it runs beside clangd)');
    assert.ok(!capabilities.documentFormattingProvider);
    assert.ok(!capabilities.definitionProvider);
    assert.equal(capabilities.workspace?.workspaceFolders?.supported, true);
  });

  it('hot-lsp.status answers idle with no program', async () => {
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.ok(sameUri(status?.workspace, session.rootUri), `workspace: ${JSON.stringify(status)}`);
    assert.equal(status.state, 'idle');
    assert.equal(status.pid, null);
    assert.equal(status.lastSwap, null);
  });

  it('opening and saving a file runs no compile command', async () => {
    const file = path.join(root, 'main.c');
    await session.didOpen(file, readFileSync(file, 'utf8'));
    await session.didSave(file);
    // A request after the notifications: the server has handled them once this answers.
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.equal(status.state, 'idle');
    assert.ok(!existsSync(marker()), 'the compile database command ran in a workspace that did not opt in');
    const launched = session.notifications.filter(isStatus(session.rootUri, (params) => params.pid !== null));
    assert.deepEqual(launched, []);
  });

  it('shuts down and exits with code 0', async () => {
    assert.equal(await session.shutdown(), 0);
  });
});

describe('a fixture workspace with hot-lsp.toml (launch = "auto")', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let session: LspSession;
  let source: string;
  let sourceFile: string;
  let sourceUri: string;
  let pid: number;

  before(async () => {
    root = temporaryDirectory('hot-lsp-fixture-');
    makeFixtureWorkspace(root, { launch: 'auto' });
    sourceFile = path.join(root, 'app.c');
    sourceUri = fileUri(sourceFile);
    source = readFileSync(sourceFile, 'utf8');
    session = new LspSession(root);
    await session.initialize();
    await session.didOpen(sourceFile, source);
  });

  after(async () => {
    session?.kill();
    if (pid !== undefined && processAlive(pid)) {
      process.kill(pid, 'SIGKILL');
    }
    removeDirectory(root);
  });

  it('launches the program on start and streams its output', async () => {
    const running = await session.waitFor(
      'hot-lsp/status running with a pid',
      isStatus(session.rootUri, (params) => params.state === 'running' && typeof params.pid === 'number'),
      STARTUP_TIMEOUT_MS,
    );
    pid = running.params.pid;
    assert.ok(processAlive(pid), `pid ${pid} from the status is not alive`);
    const text = await session.waitForOutput(/value=1 tick=\d+\r?\n/, STARTUP_TIMEOUT_MS);
    assert.match(text, /^started arg=-\r?\nvalue=1 tick=1\r?\n/, 'the output, line by line, from the start');
    const output = session.notifications.find((notification) => notification.method === 'hot-lsp/output');
    assert.ok(sameUri(output?.params.workspace, session.rootUri));
    assert.equal(output?.params.stream, 'stdout');
  });

  it('hot-lsp.status returns the running state', async () => {
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.equal(status.state, 'running');
    assert.equal(status.pid, pid);
    assert.ok(sameUri(status.workspace, session.rootUri));
  });

  it('a saved edit is swapped in: lastSwap in the status, new output, state kept', async () => {
    const mark = session.notifications.length;
    const ticksBefore = ticksWithValue(session.programOutput(), 1);
    const edited = setReturnStatement(source, 'return 2;');
    writeFileSync(sourceFile, edited.text);
    await session.didSave(sourceFile);

    const swapped = await session.waitFor(
      'hot-lsp/status with a lastSwap of current_value',
      isStatus(session.rootUri, (params) => params.lastSwap?.swapped?.includes('current_value')),
      SWAP_TIMEOUT_MS,
      mark,
    );
    const lastSwap = swapped.params.lastSwap;
    assert.ok(sameUri(lastSwap.file, sourceUri), `lastSwap.file ${lastSwap.file}`);
    assert.equal(typeof lastSwap.seq, 'number');
    for (const phase of ['compile', 'link', 'swap']) {
      assert.equal(typeof lastSwap.micros?.[phase], 'number', `micros.${phase}`);
    }

    const output = await session.waitForOutput(/value=2 tick=\d+/, SWAP_TIMEOUT_MS, mark);
    const firstTickAfter = ticksWithValue(output, 2)[0];
    assert.ok(
      firstTickAfter > Math.max(...ticksBefore),
      `the tick counter restarted (${firstTickAfter} after ${Math.max(...ticksBefore)}): the program was relaunched, not swapped`,
    );
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.equal(status.pid, pid, 'the pid changed: the program was relaunched, not swapped');
    source = edited.text;
  });

  it('a compile error is published as a compile-error diagnostic on its line', async () => {
    const mark = session.notifications.length;
    const broken = setReturnStatement(source, 'return 2 +;');
    writeFileSync(sourceFile, broken.text);
    await session.didSave(sourceFile);
    const published = await session.waitFor(
      'publishDiagnostics with a compile-error for app.c',
      diagnosticsFor(sourceUri, (diagnostics) => diagnostics.some((diagnostic) => diagnostic.code === 'compile-error')),
      SWAP_TIMEOUT_MS,
      mark,
    );
    const diagnostic = published.params.diagnostics.find((candidate: any) => candidate.code === 'compile-error');
    assert.equal(diagnostic.source, 'hot-lsp');
    assert.equal(diagnostic.severity, 1, 'a compile error is an Error');
    assert.equal(diagnostic.range.start.line, broken.line, `diagnostic on the wrong line: ${JSON.stringify(diagnostic)}`);
    assert.ok(diagnostic.message.length > 0);
    assert.ok(processAlive(pid), 'a compile error must leave the program running');
  });

  it('fixing the error clears the diagnostics and swaps the fix in', async () => {
    const mark = session.notifications.length;
    const fixed = setReturnStatement(source, 'return 3;');
    writeFileSync(sourceFile, fixed.text);
    await session.didSave(sourceFile);
    await session.waitFor(
      'publishDiagnostics clearing app.c',
      diagnosticsFor(sourceUri, (diagnostics) => diagnostics.length === 0),
      SWAP_TIMEOUT_MS,
      mark,
    );
    await session.waitForOutput(/value=3 tick=\d+/, SWAP_TIMEOUT_MS, mark);
    source = fixed.text;
  });

  it('hot-lsp.undo reverts the last swap', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.undo);
    await session.waitForOutput(/value=2 tick=\d+/, SWAP_TIMEOUT_MS, mark);
  });

  it('reports work-done progress around compile, link and swap', () => {
    const progress = session.notifications.filter((notification) => notification.method === '$/progress');
    const kinds = new Set(progress.map((notification) => notification.params?.value?.kind));
    assert.ok(
      session.serverRequests.some((request) => request.method === 'window/workDoneProgress/create'),
      'the server never asked to create a work-done progress token',
    );
    assert.ok(kinds.has('begin') && kinds.has('end'), `progress kinds seen: ${JSON.stringify([...kinds])}`);
  });

  it('hot-lsp.stop ends the program and reports it', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.stop);
    await session.waitFor(
      'hot-lsp/status after stop',
      isStatus(session.rootUri, (params) => params.state === 'exited' || params.state === 'idle'),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    assert.ok(await waitUntilGone(pid, 10_000), `pid ${pid} still runs after hot-lsp.stop`);
  });

  it('hot-lsp.launch starts it again with a new pid', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.launch);
    const running = await session.waitFor(
      'hot-lsp/status running after launch',
      isStatus(session.rootUri, (params) => params.state === 'running' && typeof params.pid === 'number'),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    assert.notEqual(running.params.pid, pid);
    pid = running.params.pid;
    await session.waitForOutput(/value=\d+ tick=\d+/, STARTUP_TIMEOUT_MS, mark);
  });

  it('shutdown ends the server and leaves no orphaned program', async () => {
    assert.equal(await session.shutdown(), 0);
    assert.ok(await waitUntilGone(pid, 10_000), `the program (pid ${pid}) outlived the server`);
  });
});

describe('a workspace opted in by client configuration (launch = "manual")', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let session: LspSession;
  let pid: number | undefined;

  before(async () => {
    root = temporaryDirectory('hot-lsp-configured-');
    makeFixtureWorkspace(root, { toml: false });
    session = new LspSession(root);
    await session.initialize({
      program: { path: 'app', launch: 'manual' },
      compile: { command: FIXTURE_COMPILE_COMMAND },
    });
  });

  after(() => {
    session?.kill();
    if (pid !== undefined && processAlive(pid)) {
      process.kill(pid, 'SIGKILL');
    }
    removeDirectory(root);
  });

  it('does not launch before hot-lsp.launch', async () => {
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.equal(status.pid, null, `launched without the command: ${JSON.stringify(status)}`);
    assert.notEqual(status.state, 'running');
  });

  it('hot-lsp.launch starts the program named by initializationOptions', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.launch);
    const running = await session.waitFor(
      'hot-lsp/status running',
      isStatus(session.rootUri, (params) => params.state === 'running' && typeof params.pid === 'number'),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    pid = running.params.pid;
    await session.waitForOutput(/started arg=-/, STARTUP_TIMEOUT_MS, mark);
  });

  it('didChangeConfiguration (section hot-lsp) applies on the next restart', async () => {
    const mark = session.notifications.length;
    await session.connection.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { 'hot-lsp': { program: { path: 'app', launch: 'manual', args: ['blue'] }, compile: { command: FIXTURE_COMPILE_COMMAND } } },
    });
    await session.executeCommand(SERVER_COMMANDS.restart);
    const running = await session.waitFor(
      'hot-lsp/status running after restart',
      isStatus(session.rootUri, (params) => params.state === 'running' && typeof params.pid === 'number' && params.pid !== pid),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    pid = running.params.pid;
    await session.waitForOutput(/started arg=blue/, STARTUP_TIMEOUT_MS, mark);
  });

  it('hot-lsp.stop, then shutdown', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.stop);
    await session.waitFor(
      'hot-lsp/status after stop',
      isStatus(session.rootUri, (params) => params.state === 'exited' || params.state === 'idle'),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    assert.equal(await session.shutdown(), 0);
  });
});

describe('attaching to a process started outside hot-lsp (launch = "manual")', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let session: LspSession;
  let program: ChildProcess;
  let programOutput = '';
  let sourceFile: string;

  /** Waits until the program's own stdout (read by the test, not the server) matches. */
  function waitForProgramOutput(pattern: RegExp, from: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pattern.test(programOutput.slice(from))) {
          clearTimeout(timer);
          program.stdout!.off('data', check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        program.stdout!.off('data', check);
        reject(new Error(`timed out waiting for ${pattern} in the attached program's output:\n${programOutput.slice(-500)}\n${session.describeRecent()}`));
      }, SWAP_TIMEOUT_MS);
      program.stdout!.on('data', check);
      check();
    });
  }

  before(async () => {
    root = temporaryDirectory('hot-lsp-attach-');
    makeFixtureWorkspace(root, { launch: 'manual' });
    sourceFile = path.join(root, 'app.c');
    program = spawn(path.join(root, 'app'), [], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    program.stdout!.on('data', (chunk: Buffer) => {
      programOutput += chunk.toString('utf8');
    });
    session = new LspSession(root);
    await session.initialize();
    await session.didOpen(sourceFile, readFileSync(sourceFile, 'utf8'));
  });

  after(() => {
    session?.kill();
    program?.kill('SIGKILL');
    removeDirectory(root);
  });

  it('hot-lsp.attach with the pid reports it running', async () => {
    await waitForProgramOutput(/value=1 tick=\d+/, 0);
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.attach, [{ pid: program.pid, workspace: session.rootUri }]);
    await session.waitFor(
      'hot-lsp/status running with the attached pid',
      isStatus(session.rootUri, (params) => params.state === 'running' && params.pid === program.pid),
      STARTUP_TIMEOUT_MS,
      mark,
    );
  });

  it('a saved edit is swapped into the attached process', async () => {
    const from = programOutput.length;
    const edited = setReturnStatement(readFileSync(sourceFile, 'utf8'), 'return 5;');
    writeFileSync(sourceFile, edited.text);
    await session.didSave(sourceFile);
    await waitForProgramOutput(/value=5 tick=\d+/, from);
  });

  it('hot-lsp.detach leaves the process running', async () => {
    const mark = session.notifications.length;
    await session.executeCommand(SERVER_COMMANDS.detach);
    await session.waitFor(
      'hot-lsp/status without the pid after detach',
      isStatus(session.rootUri, (params) => params.pid !== program.pid),
      STARTUP_TIMEOUT_MS,
      mark,
    );
    const from = programOutput.length;
    await waitForProgramOutput(/value=5 tick=\d+/, from);
    assert.equal(program.exitCode, null, 'the detached process exited');
    assert.equal(await session.shutdown(), 0);
    assert.equal(program.exitCode, null, 'shutting the server down killed a process it had only attached to');
  });
});

describe('an invalid hot-lsp.toml', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let session: LspSession;

  before(async () => {
    root = temporaryDirectory('hot-lsp-bad-config-');
    makeFixtureWorkspace(root, { launch: 'manual' });
    // Line 3 (0-based 2) has a value of the wrong type.
    writeFileSync(path.join(root, 'hot-lsp.toml'), '[program]\npath = "app"\nlaunch = 42\n');
    session = new LspSession(root);
  });

  after(() => {
    session?.kill();
    removeDirectory(root);
  });

  it('is a config-error diagnostic on the bad key, not a crash', async () => {
    await session.initialize();
    const tomlUri = fileUri(path.join(root, 'hot-lsp.toml'));
    const published = await session.waitFor(
      'a config-error diagnostic on hot-lsp.toml',
      diagnosticsFor(tomlUri, (diagnostics) => diagnostics.some((diagnostic) => diagnostic.code === 'config-error')),
      STARTUP_TIMEOUT_MS,
    );
    const diagnostic = published.params.diagnostics.find((candidate: any) => candidate.code === 'config-error');
    assert.equal(diagnostic.range.start.line, 2, `config-error on the wrong line: ${JSON.stringify(diagnostic)}`);
    assert.equal(diagnostic.source, 'hot-lsp');
    const status = await session.executeCommand(SERVER_COMMANDS.status);
    assert.equal(status.pid, null);
    assert.equal(await session.shutdown(), 0);
  });
});
