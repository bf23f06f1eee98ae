// The real extension (activate() with its default dependencies, so the real
// vscode-languageclient) inside a permissive stub of VS Code, against the real `hot-lsp --stdio`:
// server commands registered by the library beside the extension's own, status bar, program
// output, didSave -> swap, diagnostics in the collection, palette commands, settings sent as
// initializationOptions.

import './registerDeepStub';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExtensionContext } from 'vscode';
import { Uri, fireConfigurationChange, resetStub, stubState } from '../unit/vscodeStub';
import { Diagnostic, documentEvents, publishedDiagnostics } from './deepStub';
import type { HotLspExtension } from '../../src/extension';
import { EXTENSION_COMMANDS } from '../../src/extension';
import { SERVER_COMMANDS } from '../../src/protocol';
import {
  STARTUP_TIMEOUT_MS,
  SWAP_TIMEOUT_MS,
  makeFixtureWorkspace,
  processAlive,
  serverBinary,
  temporaryDirectory,
} from '../protocol/lspSession';

const TEST_TIMEOUT_MS = 240_000;

/** Polls a condition on the stub's state (the extension updates it from server messages). */
async function eventually<T>(what: string, timeoutMs: number, probe: () => T | undefined | false, details: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${details()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function channel(name: string) {
  const found = stubState.outputChannels.find((candidate) => candidate.name === name);
  assert.ok(found, `no output channel ${name}`);
  return found;
}

/** A TextDocument as vscode-languageclient reads it. */
function textDocument(file: string) {
  return {
    uri: Uri.file(file),
    fileName: file,
    languageId: 'c',
    version: 1,
    isUntitled: false,
    getText: () => readFileSync(file, 'utf8'),
  };
}

function setReturnStatement(source: string, statement: string): { text: string; line: number } {
  const lines = source.split('\n');
  const line = lines.findIndex((text) => /^\s*return .*;?\s*$/.test(text) && !/return 0;/.test(text));
  lines[line] = `    ${statement}`;
  return { text: lines.join('\n'), line };
}

async function activateIn(root: string): Promise<HotLspExtension> {
  stubState.workspaceFolders = [{ uri: Uri.file(root), name: path.basename(root), index: 0 }];
  stubState.configuration.set('serverPath', { defaultValue: 'hot-lsp', globalValue: serverBinary() });
  const { activate } = require('../../src/extension') as typeof import('../../src/extension');
  return activate({ subscriptions: [] } as unknown as ExtensionContext);
}

describe('the extension with the real language client and server', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let extension: HotLspExtension;
  let sourceFile: string;
  let pid: number;
  const details = () =>
    `status bar: ${extension?.statusBar.text}\nlog:\n${channel('hot-lsp').text.slice(-2000)}\nprogram (tail):\n${channel('hot-lsp: Program Output').text.slice(-300)}`;

  before(async () => {
    resetStub();
    root = temporaryDirectory('hot-lsp-client-');
    makeFixtureWorkspace(root, { launch: 'auto' });
    sourceFile = path.join(root, 'app.c');
    extension = await activateIn(root);
  });

  after(async () => {
    await extension?.stopServer();
    extension?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('starts the server; the library registers the server commands beside the extension ones', () => {
    assert.ok(extension.languageClient, 'no language client');
    for (const id of Object.values(SERVER_COMMANDS)) {
      assert.ok(stubState.commands.has(id), `vscode-languageclient did not register ${id}`);
    }
    for (const id of Object.values(EXTENSION_COMMANDS)) {
      assert.ok(stubState.commands.has(id), `${id} is not registered`);
    }
  });

  it('shows the running program in the status bar and its output in its channel', async () => {
    await eventually('a running status bar', STARTUP_TIMEOUT_MS, () => /hot-lsp: running \(pid \d+\)/.test(extension.statusBar.text), details);
    pid = Number(/pid (\d+)/.exec(extension.statusBar.text)![1]);
    await eventually('program output', STARTUP_TIMEOUT_MS, () => /value=1 tick=\d+\n/.test(channel('hot-lsp: Program Output').text), details);
    assert.doesNotMatch(channel('hot-lsp').text, /value=1 tick=/, 'program output leaked into the server log');
    assert.doesNotMatch(channel('hot-lsp').text, /\x1b\[/, 'ANSI escape codes in the server log channel');
  });

  it('a saved edit is swapped in and summarised in the status bar', async () => {
    documentEvents.open.fire(textDocument(sourceFile));
    const programChannel = channel('hot-lsp: Program Output');
    const from = programChannel.text.length;
    writeFileSync(sourceFile, setReturnStatement(readFileSync(sourceFile, 'utf8'), 'return 2;').text);
    documentEvents.save.fire(textDocument(sourceFile));
    await eventually('value=2 in the program output', SWAP_TIMEOUT_MS, () => /value=2 tick=\d+/.test(programChannel.text.slice(from)), details);
    await eventually(
      'a swap in the status bar',
      SWAP_TIMEOUT_MS,
      () => /^\$\(flame\) hot-lsp: running \(pid \d+\) · swapped \d+ functions? in [\d.]+ (µs|ms|s)$/.test(extension.statusBar.text),
      details,
    );
  });

  it('a compile error lands in the diagnostic collection on its line', async () => {
    const broken = setReturnStatement(readFileSync(sourceFile, 'utf8'), 'return 2 +;');
    writeFileSync(sourceFile, broken.text);
    documentEvents.save.fire(textDocument(sourceFile));
    const uri = Uri.file(sourceFile).toString();
    const diagnostic = await eventually(
      'a compile-error diagnostic',
      SWAP_TIMEOUT_MS,
      () => (publishedDiagnostics.get(uri) ?? []).find((candidate: Diagnostic) => candidate.code === 'compile-error'),
      () => `${JSON.stringify([...publishedDiagnostics])}\n${details()}`,
    );
    assert.equal(diagnostic.range.start.line, broken.line);
    assert.equal(diagnostic.source, 'hot-lsp');
  });

  it('Undo Last Swap and Show Status from the palette', async () => {
    writeFileSync(sourceFile, setReturnStatement(readFileSync(sourceFile, 'utf8'), 'return 2;').text);
    const programChannel = channel('hot-lsp: Program Output');
    const from = programChannel.text.length;
    await stubState.commands.get(EXTENSION_COMMANDS.undo)!();
    await eventually('value=1 after undo', SWAP_TIMEOUT_MS, () => /value=1 tick=\d+/.test(programChannel.text.slice(from)), details);

    const messageCount = stubState.messages.length;
    await stubState.commands.get(EXTENSION_COMMANDS.showStatus)!();
    const shown = stubState.messages.slice(messageCount).find((message) => message.severity === 'information');
    assert.ok(shown, 'Show Status showed nothing');
    assert.match(shown.message, new RegExp(`^hot-lsp: Program: running \\(pid ${pid}\\)`));

    await stubState.commands.get(EXTENSION_COMMANDS.stop)!();
    await eventually('an exited status bar', STARTUP_TIMEOUT_MS, () => /hot-lsp: (exited|idle)/.test(extension.statusBar.text), details);
  });

  it('deactivation stops the server and leaves no program behind', async () => {
    await stubState.commands.get(EXTENSION_COMMANDS.launch)!();
    await eventually('a relaunched program', STARTUP_TIMEOUT_MS, () => /hot-lsp: running \(pid \d+\)/.test(extension.statusBar.text), details);
    pid = Number(/pid (\d+)/.exec(extension.statusBar.text)![1]);
    await extension.stopServer();
    await eventually('the program to end with the server', 20_000, () => !processAlive(pid), details);
  });
});

describe('explicit settings reach the real server as initializationOptions', { timeout: TEST_TIMEOUT_MS }, () => {
  let root: string;
  let extension: HotLspExtension;

  before(async () => {
    resetStub();
    root = temporaryDirectory('hot-lsp-client-settings-');
    makeFixtureWorkspace(root, { toml: false });
    stubState.configuration.set('program.path', { workspaceValue: 'app' });
    stubState.configuration.set('program.args', { workspaceValue: ['purple'] });
    stubState.configuration.set('program.launch', { defaultValue: undefined, workspaceValue: 'manual' });
    stubState.configuration.set('compile.command', { workspaceValue: 'cc -O0 -g -c {file} -o {output}' });
    extension = await activateIn(root);
  });

  after(async () => {
    await extension?.stopServer();
    extension?.dispose();
    rmSync(root, { recursive: true, force: true });
  });

  it('Launch Program runs the program configured in settings, with its arguments', async () => {
    const programChannel = channel('hot-lsp: Program Output');
    await stubState.commands.get(EXTENSION_COMMANDS.launch)!();
    await eventually('started arg=purple', STARTUP_TIMEOUT_MS, () => programChannel.text.includes('started arg=purple'), () =>
      `${extension.statusBar.text}\n${channel('hot-lsp').text.slice(-2000)}`,
    );
  });

  it('a changed setting goes to the server (didChangeConfiguration) and applies on Restart Program', async () => {
    const programChannel = channel('hot-lsp: Program Output');
    const from = programChannel.text.length;
    stubState.configuration.set('program.args', { workspaceValue: ['orange'] });
    fireConfigurationChange(['hot-lsp.program.args']);
    await stubState.commands.get(EXTENSION_COMMANDS.restart)!();
    await eventually('started arg=orange', STARTUP_TIMEOUT_MS, () => programChannel.text.slice(from).includes('started arg=orange'), () =>
      `${extension.statusBar.text}\n${channel('hot-lsp').text.slice(-2000)}`,
    );
  });
});

describe('a multi-root workspace: one session per folder', { timeout: TEST_TIMEOUT_MS }, () => {
  let first: string;
  let second: string;
  let extension: HotLspExtension;

  before(async () => {
    resetStub();
    first = temporaryDirectory('hot-lsp-client-first-');
    second = temporaryDirectory('hot-lsp-client-second-');
    makeFixtureWorkspace(first, { launch: 'auto' });
    makeFixtureWorkspace(second, { launch: 'auto' });
    stubState.workspaceFolders = [
      { uri: Uri.file(first), name: 'first', index: 0 },
      { uri: Uri.file(second), name: 'second', index: 1 },
    ];
    stubState.configuration.set('serverPath', { globalValue: serverBinary() });
    const { activate } = require('../../src/extension') as typeof import('../../src/extension');
    extension = await activate({ subscriptions: [] } as unknown as ExtensionContext);
  });

  after(async () => {
    await extension?.stopServer();
    extension?.dispose();
    rmSync(first, { recursive: true, force: true });
    rmSync(second, { recursive: true, force: true });
  });

  /** Makes a file of a folder the active editor and returns the status bar text for it. */
  function focus(folder: string): string {
    stubState.activeTextEditor = { document: { uri: Uri.file(path.join(folder, 'app.c')) } };
    stubState.onDidChangeActiveTextEditor.fire(stubState.activeTextEditor);
    return extension.statusBar.text;
  }

  const details = () => `status bar: ${extension.statusBar.text}\nlog:\n${channel('hot-lsp').text.slice(-2000)}`;

  it('both folders run their program; the status bar follows the active editor', async () => {
    const firstPid = await eventually('the first folder running', STARTUP_TIMEOUT_MS, () => /pid (\d+)/.exec(focus(first))?.[1], details);
    const secondPid = await eventually('the second folder running', STARTUP_TIMEOUT_MS, () => /pid (\d+)/.exec(focus(second))?.[1], details);
    assert.notEqual(firstPid, secondPid);
    assert.match(focus(first), new RegExp(`pid ${firstPid}\\)`));
  });

  it('Stop Program stops only the active editor\'s folder', async () => {
    const firstPid = Number(/pid (\d+)/.exec(focus(first))![1]);
    focus(second);
    await stubState.commands.get(EXTENSION_COMMANDS.stop)!();
    await eventually('the second folder stopped', STARTUP_TIMEOUT_MS, () => /hot-lsp: (exited|idle)/.test(focus(second)), details);
    assert.match(focus(first), new RegExp(`running \\(pid ${firstPid}\\)`));
    assert.ok(processAlive(firstPid), 'the first folder\'s program was stopped too');
  });
});
