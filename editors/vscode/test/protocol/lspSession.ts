// A minimal LSP client for the protocol tests: spawns the real `hot-lsp --stdio`, speaks
// JSON-RPC through vscode-languageserver-protocol like vscode-languageclient does, records every
// notification and lets tests wait for one that matches, with a deadline instead of sleeps.

import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ClientCapabilities,
  DidSaveTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializeRequest,
  InitializeResult,
  InitializedNotification,
  ProtocolConnection,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  WorkDoneProgress,
  createProtocolConnection,
} from 'vscode-languageserver-protocol/node';

/** The repository root (this file is compiled to editors/vscode/out/test/protocol/). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..', '..');
export const FIXTURE_SCRIPT = path.join(REPO_ROOT, 'tests', 'editors', 'fixture', 'make-workspace.sh');

/** Generous deadlines: CI is a busy 2-core machine and the first compile may be slow. */
export const STARTUP_TIMEOUT_MS = 60_000;
export const SWAP_TIMEOUT_MS = 90_000;

/**
 * The server binary: $HOT_LSP, else <repo>/target/debug/hot-lsp, which is built with cargo when
 * it is missing (the build output goes to the terminal so a slow build is visible).
 */
export function serverBinary(): string {
  const fromEnvironment = process.env.HOT_LSP;
  if (fromEnvironment !== undefined && fromEnvironment.length > 0) {
    if (!existsSync(fromEnvironment)) {
      throw new Error(`HOT_LSP=${fromEnvironment} does not exist`);
    }
    return fromEnvironment;
  }
  const targetDirectory = process.env.CARGO_TARGET_DIR ?? path.join(REPO_ROOT, 'target');
  const binary = path.join(targetDirectory, 'debug', 'hot-lsp');
  if (!existsSync(binary)) {
    const build = spawnSync('cargo', ['build', '-p', 'hot-lsp'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (build.status !== 0) {
      throw new Error(`cargo build -p hot-lsp failed (status ${build.status}); set HOT_LSP to a built server`);
    }
  }
  return binary;
}

/** A fresh temporary directory (real path, so uris compare equal to the server's). */
export function temporaryDirectory(prefix: string): string {
  return realpathSync(mkdtempSync(path.join(tmpdir(), prefix)));
}

/** Creates the fixture workspace (program built, compile database, optional hot-lsp.toml). */
export function makeFixtureWorkspace(directory: string, options: { launch?: 'auto' | 'manual'; toml?: boolean } = {}): void {
  const args = [directory, '--launch', options.launch ?? 'auto'];
  if (options.toml === false) {
    args.push('--no-toml');
  }
  const result = spawnSync('sh', [FIXTURE_SCRIPT, ...args], { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`${FIXTURE_SCRIPT} failed: ${result.stderr}`);
  }
}

export function fileUri(file: string): string {
  return pathToFileURL(file).href;
}

export interface RecordedNotification {
  method: string;
  /** Whatever the server sent: the tests check its shape. */
  params: any;
}

interface Waiter {
  predicate: (notification: RecordedNotification) => boolean;
  resolve: (notification: RecordedNotification) => void;
}

/** The client capabilities of a VS Code-like client that supports work-done progress. */
const CLIENT_CAPABILITIES: ClientCapabilities = {
  workspace: { workspaceFolders: true, configuration: true, didChangeConfiguration: { dynamicRegistration: false } },
  textDocument: {
    synchronization: { didSave: true, dynamicRegistration: false },
    publishDiagnostics: { relatedInformation: true, codeDescriptionSupport: true },
  },
  window: { workDoneProgress: true, showMessage: {} },
};

export class LspSession {
  readonly connection: ProtocolConnection;
  readonly notifications: RecordedNotification[] = [];
  private waiters: Waiter[] = [];
  private readonly process: ChildProcess;
  private stderr = '';
  private exited: Promise<number | null>;
  /** Requests the server sent to us, by method (e.g. window/workDoneProgress/create). */
  readonly serverRequests: RecordedNotification[] = [];
  initializeResult: InitializeResult | undefined;

  constructor(
    readonly rootDirectory: string,
    binary: string = serverBinary(),
  ) {
    this.process = spawn(binary, ['--stdio'], {
      cwd: rootDirectory,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
    });
    this.exited = new Promise((resolve) => this.process.on('exit', (code) => resolve(code)));
    this.process.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
    });
    this.connection = createProtocolConnection(
      new StreamMessageReader(this.process.stdout!),
      new StreamMessageWriter(this.process.stdin!),
    );
    this.connection.onUnhandledNotification((message) => this.record(message.method, message.params));
    for (const method of [
      'window/workDoneProgress/create',
      'client/registerCapability',
      'client/unregisterCapability',
      'window/showMessageRequest',
      'workspace/configuration',
    ]) {
      this.connection.onRequest(method, (params: any) => {
        this.serverRequests.push({ method, params });
        if (method === 'window/workDoneProgress/create') {
          // vscode-jsonrpc routes $/progress to a handler per token (as vscode-languageclient
          // registers them), never to onUnhandledNotification.
          const token = params?.token;
          this.connection.onProgress(WorkDoneProgress.type, token, (value) => this.record('$/progress', { token, value }));
        }
        if (method === 'workspace/configuration') {
          // No client-side configuration: the workspace's hot-lsp.toml applies.
          return (params?.items ?? []).map(() => null);
        }
        return null;
      });
    }
    this.connection.onError(([error]) => this.record('$/connectionError', { message: String(error) }));
    this.connection.listen();
  }

  get rootUri(): string {
    return fileUri(this.rootDirectory);
  }

  /** The server's stderr so far: printed when a wait times out, to make failures readable. */
  get log(): string {
    return this.stderr;
  }

  private record(method: string, params: unknown): void {
    const notification = { method, params };
    this.notifications.push(notification);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(notification)) {
        this.waiters = this.waiters.filter((other) => other !== waiter);
        waiter.resolve(notification);
      }
    }
  }

  async initialize(initializationOptions?: unknown): Promise<InitializeResult> {
    const result = await withTimeout(
      this.connection.sendRequest(InitializeRequest.type, {
        processId: process.pid,
        clientInfo: { name: 'hot-lsp protocol tests', version: '1' },
        rootUri: this.rootUri,
        workspaceFolders: [{ uri: this.rootUri, name: path.basename(this.rootDirectory) }],
        capabilities: CLIENT_CAPABILITIES,
        initializationOptions,
      }),
      STARTUP_TIMEOUT_MS,
      'initialize',
      () => this.log,
    );
    await this.connection.sendNotification(InitializedNotification.type, {});
    this.initializeResult = result;
    return result;
  }

  /** Resolves with the first notification (already received or future) that matches. */
  waitFor(
    description: string,
    predicate: (notification: RecordedNotification) => boolean,
    timeoutMs: number,
    startIndex = 0,
  ): Promise<RecordedNotification> {
    const existing = this.notifications.slice(startIndex).find(predicate);
    if (existing !== undefined) {
      return Promise.resolve(existing);
    }
    const waiting = new Promise<RecordedNotification>((resolve) => {
      this.waiters.push({ predicate, resolve });
    });
    return withTimeout(waiting, timeoutMs, `waiting for ${description}`, () => this.describeRecent());
  }

  /** Program output received so far (all `hot-lsp/output` text concatenated). */
  programOutput(startIndex = 0): string {
    return this.notifications
      .slice(startIndex)
      .filter((notification) => notification.method === 'hot-lsp/output')
      .map((notification) => String(notification.params?.text ?? ''))
      .join('');
  }

  /** Waits until the program output received after startIndex matches the pattern. */
  async waitForOutput(pattern: RegExp, timeoutMs: number, startIndex = 0): Promise<string> {
    const matches = () => pattern.test(this.programOutput(startIndex));
    if (!matches()) {
      await this.waitFor(
        `program output matching ${pattern}`,
        (notification) => notification.method === 'hot-lsp/output' && matches(),
        timeoutMs,
        startIndex,
      );
    }
    return this.programOutput(startIndex);
  }

  executeCommand(command: string, args: unknown[] = [{ workspace: this.rootUri }]): Promise<any> {
    return withTimeout(
      this.connection.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }),
      STARTUP_TIMEOUT_MS,
      `workspace/executeCommand ${command}`,
      () => this.describeRecent(),
    );
  }

  async didOpen(file: string, text: string, languageId = 'c'): Promise<void> {
    await this.connection.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri: fileUri(file), languageId, version: 1, text },
    });
  }

  async didSave(file: string): Promise<void> {
    await this.connection.sendNotification(DidSaveTextDocumentNotification.type, {
      textDocument: { uri: fileUri(file) },
    });
  }

  /** A readable summary of the last notifications and the server log, for failure messages. */
  describeRecent(): string {
    const recent = this.notifications
      .slice(-25)
      .map((notification) => `  ${notification.method} ${JSON.stringify(notification.params).slice(0, 300)}`)
      .join('\n');
    return `last notifications:\n${recent}\nserver stderr (tail):\n${this.stderr.slice(-4000)}`;
  }

  /** shutdown + exit; returns the server's exit code. Kills it if it does not exit in time. */
  async shutdown(): Promise<number | null> {
    try {
      await withTimeout(this.connection.sendRequest(ShutdownRequest.type), 20_000, 'shutdown', () => this.log);
      await this.connection.sendNotification(ExitNotification.type);
      return await withTimeout(this.exited, 20_000, 'server exit after the exit notification', () => this.log);
    } finally {
      this.kill();
    }
  }

  /** Ends the server process if it is still running (cleanup after a failed test). */
  kill(): void {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGKILL');
    }
    this.connection.dispose();
  }
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string, details: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms ${what}\n${details()}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Is the process with this pid alive? */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
