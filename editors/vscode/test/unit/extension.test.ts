// Tests of the extension's behaviour inside a stubbed VS Code, with a fake language client.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { ExtensionContext } from 'vscode';
import { Uri, fireConfigurationChange, resetStub, stubState } from './registerVscodeStub';
import type { ClientOptions, HotLspClient } from '../../src/client';
import { EXTENSION_COMMANDS, HotLspExtension, activate, resolveServerPath } from '../../src/extension';
import type { ProcessInfo } from '../../src/processes';
import { OUTPUT_NOTIFICATION, STATUS_NOTIFICATION, StatusParams } from '../../src/protocol';

class FakeClient implements HotLspClient {
  started = false;
  stopped = false;
  startError: Error | undefined;
  handlers = new Map<string, (params: unknown) => void>();
  executed: { command: string; args: unknown[] }[] = [];
  configurations: unknown[] = [];
  commandResult: unknown = null;

  constructor(readonly options: ClientOptions) {}
  async start(): Promise<void> {
    if (this.startError) {
      throw this.startError;
    }
    this.started = true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
  isRunning(): boolean {
    return this.started && !this.stopped;
  }
  onNotification(method: string, handler: (params: unknown) => void) {
    this.handlers.set(method, handler);
    return { dispose: () => this.handlers.delete(method) };
  }
  async executeCommand(command: string, args: unknown[]): Promise<unknown> {
    this.executed.push({ command, args });
    return this.commandResult;
  }
  async sendConfiguration(settings: unknown): Promise<void> {
    this.configurations.push(settings);
  }
  notify(method: string, params: unknown): void {
    const handler = this.handlers.get(method);
    assert.ok(handler, `no handler for ${method}`);
    handler(params);
  }
}

const processes: ProcessInfo[] = [
  { pid: 501, name: 'app', cmdline: './app --level 3' },
  { pid: 20, name: 'bash', cmdline: '-bash' },
];

let clients: FakeClient[];
let nextStartError: Error | undefined;

async function activateExtension(): Promise<HotLspExtension> {
  const context = { subscriptions: [] as { dispose(): unknown }[] } as unknown as ExtensionContext;
  return activate(context, {
    createClient: (options) => {
      const client = new FakeClient(options);
      client.startError = nextStartError;
      clients.push(client);
      return client;
    },
    listProcesses: async () => processes,
  });
}

function runningStatus(overrides: Partial<StatusParams> = {}): StatusParams {
  return {
    workspace: 'file:///work/app',
    state: 'running',
    pid: 77,
    exitCode: null,
    signal: null,
    lastSwap: null,
    message: null,
    ...overrides,
  };
}

function programChannel() {
  const channel = stubState.outputChannels.find((candidate) => candidate.name === 'hot-lsp: Program Output');
  assert.ok(channel);
  return channel;
}

beforeEach(() => {
  resetStub();
  clients = [];
  nextStartError = undefined;
  stubState.workspaceFolders = [{ uri: Uri.file('/work/app'), name: 'app', index: 0 }];
});

test('activation registers the extension commands and starts the server with --stdio defaults', async () => {
  const extension = await activateExtension();
  for (const id of Object.values(EXTENSION_COMMANDS)) {
    assert.ok(stubState.commands.has(id), `${id} is not registered`);
  }
  assert.ok(![...stubState.commands.keys()].some((id) => id.startsWith('hot-lsp.')));
  assert.equal(clients.length, 1);
  assert.ok(clients[0].started);
  assert.equal(clients[0].options.serverPath, 'hot-lsp');
  assert.equal(clients[0].options.cwd, '/work/app');
  // Nothing set explicitly: no initializationOptions, so the server is not opted in by us.
  assert.equal(clients[0].options.initializationOptions, undefined);
  assert.deepEqual(
    stubState.outputChannels.map((channel) => channel.name),
    ['hot-lsp', 'hot-lsp: Program Output'],
  );
  extension.dispose();
});

test('only explicit settings become initializationOptions and configuration answers', async () => {
  stubState.configuration.set('program.path', { workspaceValue: 'build/app' });
  stubState.configuration.set('program.launch', { defaultValue: 'auto' });
  stubState.configuration.set('program.disableAslr', { globalValue: true });
  stubState.configuration.set('serverPath', { defaultValue: 'hot-lsp', globalValue: '/opt/hot-lsp/bin/hot-lsp' });
  const extension = await activateExtension();
  const options = clients[0].options;
  assert.equal(options.serverPath, '/opt/hot-lsp/bin/hot-lsp');
  assert.deepEqual(options.initializationOptions, { program: { path: 'build/app', disable_aslr: true } });
  assert.deepEqual(options.configurationFor(undefined), { program: { path: 'build/app', disable_aslr: true } });
  extension.dispose();
});

test('a changed setting is sent as didChangeConfiguration; a changed serverPath restarts', async () => {
  const extension = await activateExtension();
  stubState.configuration.set('program.args', { workspaceValue: ['--level', '2'] });
  fireConfigurationChange(['hot-lsp.program.args']);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(clients[0].configurations, [{ program: { args: ['--level', '2'] } }]);

  fireConfigurationChange(['editor.fontSize']);
  assert.equal(clients[0].configurations.length, 1);

  stubState.configuration.set('serverPath', { globalValue: '/usr/local/bin/hot-lsp' });
  fireConfigurationChange(['hot-lsp.serverPath']);
  for (let turn = 0; turn < 10 && clients.length < 2; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(clients.length, 2);
  assert.ok(clients[0].stopped);
  assert.equal(clients[1].options.serverPath, '/usr/local/bin/hot-lsp');
  extension.dispose();
});

test('status notifications drive the status bar; malformed ones are ignored', async () => {
  const extension = await activateExtension();
  const client = clients[0];
  client.notify(STATUS_NOTIFICATION, runningStatus());
  assert.equal(extension.statusBar.text, '$(flame) hot-lsp: running (pid 77)');
  client.notify(
    STATUS_NOTIFICATION,
    runningStatus({
      lastSwap: {
        seq: 1,
        file: 'file:///work/app/main.c',
        swapped: ['a', 'b', 'c'],
        added: [],
        skipped: 0,
        micros: { compile: 30_000, link: 500, swap: 400 },
      },
    }),
  );
  assert.equal(extension.statusBar.text, '$(flame) hot-lsp: running (pid 77) · swapped 3 functions in 0.4 ms');
  client.notify(STATUS_NOTIFICATION, { state: 'nonsense' });
  assert.equal(extension.statusBar.text, '$(flame) hot-lsp: running (pid 77) · swapped 3 functions in 0.4 ms');
  assert.match(extension.logChannel ? stubState.outputChannels[0].text : '', /malformed hot-lsp\/status/);
  extension.dispose();
});

test('the status bar never shows another folder\'s status for the active editor', async () => {
  stubState.workspaceFolders = [
    { uri: Uri.file('/work/app'), name: 'app', index: 0 },
    { uri: Uri.file('/work/other'), name: 'other', index: 1 },
  ];
  const extension = await activateExtension();
  clients[0].notify(STATUS_NOTIFICATION, runningStatus());
  // The active editor is in a folder whose session has not reported yet: not app's pid.
  stubState.activeTextEditor = { document: { uri: Uri.file('/work/other/main.c') } };
  stubState.onDidChangeActiveTextEditor.fire(stubState.activeTextEditor);
  assert.equal(extension.statusBar.text, '$(circle-outline) hot-lsp');
  stubState.activeTextEditor = { document: { uri: Uri.file('/work/app/main.c') } };
  stubState.onDidChangeActiveTextEditor.fire(stubState.activeTextEditor);
  assert.equal(extension.statusBar.text, '$(flame) hot-lsp: running (pid 77)');
  // An editor outside every folder shows the folder that reported last.
  stubState.activeTextEditor = { document: { uri: Uri.file('/tmp/notes.c') } };
  stubState.onDidChangeActiveTextEditor.fire(stubState.activeTextEditor);
  assert.equal(extension.statusBar.text, '$(flame) hot-lsp: running (pid 77)');
  extension.dispose();
});

test('program output goes to its own channel', async () => {
  const extension = await activateExtension();
  clients[0].notify(OUTPUT_NOTIFICATION, { workspace: 'file:///work/app', stream: 'stdout', text: 'tick 1\r\n' });
  clients[0].notify(OUTPUT_NOTIFICATION, { workspace: 'file:///work/app', stream: 'stderr', text: 'warn\n' });
  assert.equal(programChannel().text, 'tick 1\nwarn\n');
  assert.equal(stubState.outputChannels[0].text.includes('tick 1'), false);
  extension.dispose();
});

test('palette commands call the server commands with the workspace', async () => {
  const extension = await activateExtension();
  const client = clients[0];
  const workspace = 'file:///work/app';
  for (const [extensionCommand, serverCommand] of [
    [EXTENSION_COMMANDS.launch, 'hot-lsp.launch'],
    [EXTENSION_COMMANDS.stop, 'hot-lsp.stop'],
    [EXTENSION_COMMANDS.restart, 'hot-lsp.restart'],
    [EXTENSION_COMMANDS.undo, 'hot-lsp.undo'],
    [EXTENSION_COMMANDS.detach, 'hot-lsp.detach'],
  ]) {
    client.executed = [];
    await stubState.commands.get(extensionCommand)!();
    assert.deepEqual(client.executed, [{ command: serverCommand, args: [{ workspace }] }]);
  }
  extension.dispose();
});

test('attach offers the process list and sends the picked pid', async () => {
  const extension = await activateExtension();
  stubState.quickPickAnswer = (items) => items.find((item) => (item as { pid: number }).pid === 501);
  await stubState.commands.get(EXTENSION_COMMANDS.attach)!();
  assert.deepEqual(
    stubState.quickPickItems.map((item) => (item as { label: string }).label),
    ['501  app', '20  bash'],
  );
  assert.deepEqual(clients[0].executed, [
    { command: 'hot-lsp.attach', args: [{ pid: 501, workspace: 'file:///work/app' }] },
  ]);

  clients[0].executed = [];
  stubState.quickPickAnswer = () => undefined;
  await stubState.commands.get(EXTENSION_COMMANDS.attach)!();
  assert.deepEqual(clients[0].executed, [], 'a cancelled pick attaches to nothing');
  extension.dispose();
});

test('show status asks the server and updates the status bar', async () => {
  const extension = await activateExtension();
  clients[0].commandResult = runningStatus({ state: 'exited', pid: null, exitCode: 2 });
  await stubState.commands.get(EXTENSION_COMMANDS.showStatus)!();
  assert.deepEqual(clients[0].executed, [{ command: 'hot-lsp.status', args: [{ workspace: 'file:///work/app' }] }]);
  assert.equal(extension.statusBar.text, '$(debug-stop) hot-lsp: exited (code 2)');
  const message = stubState.messages.find((shown) => shown.severity === 'information');
  assert.ok(message);
  assert.match(message.message, /^hot-lsp: Program: exited \(code 2\)/);
  extension.dispose();
});

test('in a multi-root workspace commands target the folder of the active editor', async () => {
  stubState.workspaceFolders.push({ uri: Uri.file('/work/lib'), name: 'lib', index: 1 });
  stubState.activeTextEditor = { document: { uri: Uri.file('/work/lib/src/x.c') } };
  const extension = await activateExtension();
  await stubState.commands.get(EXTENSION_COMMANDS.launch)!();
  assert.deepEqual(clients[0].executed, [{ command: 'hot-lsp.launch', args: [{ workspace: 'file:///work/lib' }] }]);
  extension.dispose();
});

test('an untrusted workspace starts no server until trust is granted', async () => {
  stubState.trusted = false;
  const extension = await activateExtension();
  assert.equal(clients.length, 0);
  assert.equal(extension.statusBar.text, '$(warning) hot-lsp: off');
  await stubState.commands.get(EXTENSION_COMMANDS.launch)!();
  assert.match(stubState.messages.at(-1)?.message ?? '', /server is not running/);

  stubState.trusted = true;
  stubState.onDidGrantWorkspaceTrust.fire();
  for (let turn = 0; turn < 10 && !clients[0]?.started; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(clients.length, 1);
  assert.ok(clients[0].started);
  extension.dispose();
});

test('a server that cannot start is reported with a hint about hot-lsp.serverPath', async () => {
  nextStartError = new Error('spawn hot-lsp ENOENT');
  const extension = await activateExtension();
  const error = stubState.messages.find((shown) => shown.severity === 'error');
  assert.ok(error);
  assert.match(error.message, /spawn hot-lsp ENOENT/);
  assert.match(error.message, /hot-lsp\.serverPath/);
  assert.equal(extension.statusBar.text, '$(warning) hot-lsp: off');
  assert.equal(extension.languageClient, undefined);
  extension.dispose();
});

test('server path resolution', () => {
  assert.equal(resolveServerPath(undefined, '/w'), 'hot-lsp');
  assert.equal(resolveServerPath('  ', '/w'), 'hot-lsp');
  assert.equal(resolveServerPath('hot-lsp', '/w'), 'hot-lsp');
  assert.equal(resolveServerPath('/opt/hot-lsp', '/w'), '/opt/hot-lsp');
  assert.equal(resolveServerPath('target/debug/hot-lsp', '/w'), '/w/target/debug/hot-lsp');
  assert.equal(resolveServerPath('~/bin/hot-lsp', '/w'), `${process.env.HOME}/bin/hot-lsp`);
});
