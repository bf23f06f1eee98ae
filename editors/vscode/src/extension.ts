// The VS Code extension of hot-lsp: starts the server for trusted workspaces, forwards the
// user's explicit settings, and offers the server's commands, status and program output.
//
// It deliberately adds no completion, hover or formatting: hot-lsp runs beside clangd.

import * as path from 'path';
import * as vscode from 'vscode';
import type { ClientOptions, HotLspClient } from './client';
import { listProcesses, processPickItem, ProcessInfo } from './processes';
import {
  OUTPUT_NOTIFICATION,
  SERVER_COMMANDS,
  STATUS_NOTIFICATION,
  ServerCommandName,
  StatusParams,
  commandArguments,
  isOutputParams,
  isStatusParams,
} from './protocol';
import { ServerSettings, buildServerSettings, initializationOptions } from './settings';
import { StatusBarController } from './statusBar';
import { describeStatus, normalizeOutput } from './statusText';

/**
 * The extension's own command ids. They differ from the server's `hot-lsp.*` ids on purpose:
 * vscode-languageclient registers every command of the server's executeCommandProvider under
 * its own id, and registering the same id twice fails.
 */
export const EXTENSION_COMMANDS = {
  launch: 'hotLsp.launch',
  attach: 'hotLsp.attach',
  detach: 'hotLsp.detach',
  stop: 'hotLsp.stop',
  restart: 'hotLsp.restart',
  undo: 'hotLsp.undo',
  showStatus: 'hotLsp.showStatus',
  showProgramOutput: 'hotLsp.showProgramOutput',
  restartServer: 'hotLsp.restartServer',
} as const;

/** What activate() needs from outside; tests replace these. */
export interface ExtensionDependencies {
  createClient(options: ClientOptions): HotLspClient;
  listProcesses(): Promise<ProcessInfo[]>;
}

function defaultDependencies(): ExtensionDependencies {
  return {
    // Loaded lazily so that this module can be loaded (and tested) without the client library.
    createClient: (options) => (require('./client') as typeof import('./client')).createClient(options),
    listProcesses: () => listProcesses(),
  };
}

/** Reads the `hot-lsp` section, optionally for one workspace folder. */
function readServerSettings(scopeUri?: string): { settings: ServerSettings; problems: string[] } {
  const scope = scopeUri !== undefined ? vscode.Uri.parse(scopeUri) : undefined;
  return buildServerSettings(vscode.workspace.getConfiguration('hot-lsp', scope));
}

/**
 * The configured server executable. A relative path with a directory part is taken relative
 * to the first workspace folder, so a project can point at its own build.
 */
export function resolveServerPath(configured: string | undefined, firstFolder: string | undefined): string {
  const serverPath = configured && configured.trim().length > 0 ? configured.trim() : 'hot-lsp';
  if (serverPath.startsWith('~/')) {
    return path.join(process.env.HOME ?? '~', serverPath.slice(2));
  }
  if (!path.isAbsolute(serverPath) && serverPath.includes('/') && firstFolder !== undefined) {
    return path.join(firstFolder, serverPath);
  }
  return serverPath;
}

export class HotLspExtension implements vscode.Disposable {
  private client: HotLspClient | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private clientDisposables: vscode.Disposable[] = [];
  readonly logChannel: vscode.OutputChannel;
  readonly programChannel: vscode.OutputChannel;
  readonly statusBar: StatusBarController;

  constructor(private readonly dependencies: ExtensionDependencies) {
    this.logChannel = vscode.window.createOutputChannel('hot-lsp');
    this.programChannel = vscode.window.createOutputChannel('hot-lsp: Program Output');
    this.statusBar = new StatusBarController(EXTENSION_COMMANDS.showStatus);
    this.disposables.push(this.logChannel, this.programChannel, this.statusBar);
  }

  /** Registers commands and listeners; starts the server when the workspace is trusted. */
  async activate(context: vscode.ExtensionContext): Promise<void> {
    const handlers: Record<string, (...args: unknown[]) => unknown> = {
      [EXTENSION_COMMANDS.launch]: () => this.runServerCommand('launch'),
      [EXTENSION_COMMANDS.attach]: () => this.attach(),
      [EXTENSION_COMMANDS.detach]: () => this.runServerCommand('detach'),
      [EXTENSION_COMMANDS.stop]: () => this.runServerCommand('stop'),
      [EXTENSION_COMMANDS.restart]: () => this.runServerCommand('restart'),
      [EXTENSION_COMMANDS.undo]: () => this.runServerCommand('undo'),
      [EXTENSION_COMMANDS.showStatus]: () => this.showStatus(),
      [EXTENSION_COMMANDS.showProgramOutput]: () => this.programChannel.show(true),
      [EXTENSION_COMMANDS.restartServer]: () => this.restartServer(),
    };
    for (const [id, handler] of Object.entries(handlers)) {
      this.disposables.push(vscode.commands.registerCommand(id, handler));
    }
    this.disposables.push(
      vscode.window.onDidChangeActiveTextEditor(() => this.statusBar.render()),
      vscode.workspace.onDidChangeConfiguration((event) => this.configurationChanged(event)),
      vscode.workspace.onDidGrantWorkspaceTrust(() => void this.startServer()),
    );
    context.subscriptions.push(this);
    await this.startServer();
  }

  /** The running client, if any. */
  get languageClient(): HotLspClient | undefined {
    return this.client;
  }

  async startServer(): Promise<void> {
    if (this.client !== undefined) {
      return;
    }
    if (!vscode.workspace.isTrusted) {
      // The manifest already keeps the extension out of untrusted workspaces; this guards
      // against a host that activates it anyway. hot-lsp runs the workspace's compile commands.
      this.statusBar.setServerProblem('hot-lsp does not run in untrusted workspaces. Trust the workspace to enable it.');
      return;
    }
    const folders = vscode.workspace.workspaceFolders ?? [];
    const firstFolder = folders[0]?.uri.fsPath;
    const configuredPath = vscode.workspace.getConfiguration('hot-lsp').get<string>('serverPath');
    const serverPath = resolveServerPath(configuredPath, firstFolder);
    const { settings, problems } = readServerSettings();
    this.reportSettingsProblems(problems);

    const client = this.dependencies.createClient({
      serverPath,
      cwd: firstFolder,
      initializationOptions: initializationOptions(settings),
      logChannel: this.logChannel,
      configurationFor: (scopeUri) => readServerSettings(scopeUri).settings,
    });
    this.client = client;
    this.clientDisposables = [
      client.onNotification(STATUS_NOTIFICATION, (params) => this.statusReceived(params)),
      client.onNotification(OUTPUT_NOTIFICATION, (params) => this.outputReceived(params)),
    ];
    try {
      await client.start();
      this.statusBar.setServerProblem(undefined);
    } catch (error) {
      const problem = `hot-lsp could not start "${serverPath}": ${errorMessage(error)}`;
      this.logChannel.appendLine(problem);
      this.statusBar.setServerProblem(`${problem}\nSet "hot-lsp.serverPath" to the hot-lsp executable.`);
      void vscode.window
        .showErrorMessage(`${problem}. Set "hot-lsp.serverPath" to the hot-lsp executable.`, 'Open Settings', 'Show Log')
        .then((choice) => {
          if (choice === 'Open Settings') {
            void vscode.commands.executeCommand('workbench.action.openSettings', 'hot-lsp.serverPath');
          } else if (choice === 'Show Log') {
            this.logChannel.show(true);
          }
        });
      await this.stopServer();
    }
  }

  async stopServer(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    for (const disposable of this.clientDisposables) {
      disposable.dispose();
    }
    this.clientDisposables = [];
    if (client !== undefined) {
      try {
        await client.stop();
      } catch (error) {
        this.logChannel.appendLine(`hot-lsp: stopping the server failed: ${errorMessage(error)}`);
      }
    }
  }

  async restartServer(): Promise<void> {
    await this.stopServer();
    await this.startServer();
  }

  statusReceived(params: unknown): void {
    if (!isStatusParams(params)) {
      this.logChannel.appendLine(`hot-lsp: ignored a malformed ${STATUS_NOTIFICATION}: ${JSON.stringify(params)}`);
      return;
    }
    this.statusBar.update(params);
  }

  outputReceived(params: unknown): void {
    if (!isOutputParams(params)) {
      this.logChannel.appendLine(`hot-lsp: ignored a malformed ${OUTPUT_NOTIFICATION}: ${JSON.stringify(params)}`);
      return;
    }
    this.programChannel.append(normalizeOutput(params.text));
  }

  private configurationChanged(event: vscode.ConfigurationChangeEvent): void {
    if (event.affectsConfiguration('hot-lsp.serverPath')) {
      void this.restartServer();
      return;
    }
    if (!event.affectsConfiguration('hot-lsp') || this.client === undefined) {
      return;
    }
    const { settings, problems } = readServerSettings();
    this.reportSettingsProblems(problems);
    this.client.sendConfiguration(settings).catch((error) => {
      this.logChannel.appendLine(`hot-lsp: sending the configuration failed: ${errorMessage(error)}`);
    });
  }

  private reportSettingsProblems(problems: string[]): void {
    for (const problem of problems) {
      this.logChannel.appendLine(problem);
    }
    if (problems.length > 0) {
      void vscode.window.showWarningMessage(problems.join(' '));
    }
  }

  /**
   * The workspace folder a command applies to: the folder of the active editor, the only
   * folder, or the one the user picks. `null` when the user cancelled the pick.
   */
  private async targetWorkspace(): Promise<string | undefined | null> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (folders.length <= 1) {
      return folders[0]?.uri.toString();
    }
    const activeUri = vscode.window.activeTextEditor?.document.uri;
    const activeFolder = activeUri ? vscode.workspace.getWorkspaceFolder(activeUri) : undefined;
    if (activeFolder !== undefined) {
      return activeFolder.uri.toString();
    }
    const picked = await vscode.window.showWorkspaceFolderPick({ placeHolder: 'hot-lsp: which workspace folder?' });
    return picked ? picked.uri.toString() : null;
  }

  /** Sends workspace/executeCommand for a server command; shows failures to the user. */
  async runServerCommand(name: ServerCommandName, extra: Record<string, unknown> = {}): Promise<unknown> {
    const client = this.client;
    if (client === undefined) {
      void vscode.window.showErrorMessage('hot-lsp: the server is not running (see the "hot-lsp" output).');
      return undefined;
    }
    const workspace = await this.targetWorkspace();
    if (workspace === null) {
      return undefined;
    }
    const command = SERVER_COMMANDS[name];
    try {
      const result = await client.executeCommand(command, commandArguments(workspace, extra));
      if (isStatusParams(result)) {
        this.statusBar.update(result);
      }
      return result;
    } catch (error) {
      void vscode.window.showErrorMessage(`hot-lsp: ${command} failed: ${errorMessage(error)}`);
      return undefined;
    }
  }

  /** Lets the user pick one of their processes and attaches the session to it. */
  async attach(): Promise<void> {
    let processes: ProcessInfo[];
    try {
      processes = await this.dependencies.listProcesses();
    } catch (error) {
      void vscode.window.showErrorMessage(`hot-lsp: cannot list processes: ${errorMessage(error)}`);
      return;
    }
    const picked = await vscode.window.showQuickPick(processes.map(processPickItem), {
      placeHolder: 'Attach hot-lsp to which process?',
      matchOnDescription: true,
    });
    if (picked !== undefined) {
      await this.runServerCommand('attach', { pid: picked.pid });
    }
  }

  /** Asks the server for the status and shows it. */
  async showStatus(): Promise<StatusParams | undefined> {
    const result = await this.runServerCommand('status');
    if (!isStatusParams(result)) {
      return undefined;
    }
    const lines = describeStatus(result);
    this.logChannel.appendLine(`hot-lsp status:\n  ${lines.join('\n  ')}`);
    const choice = await vscode.window.showInformationMessage(
      `hot-lsp: ${lines.slice(0, 2).join(' · ')}`,
      'Show Details',
      'Show Program Output',
    );
    if (choice === 'Show Details') {
      this.logChannel.show(true);
    } else if (choice === 'Show Program Output') {
      this.programChannel.show(true);
    }
    return result;
  }

  dispose(): void {
    void this.stopServer();
    for (const disposable of this.disposables.splice(0)) {
      disposable.dispose();
    }
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let extension: HotLspExtension | undefined;

export async function activate(
  context: vscode.ExtensionContext,
  dependencies: ExtensionDependencies = defaultDependencies(),
): Promise<HotLspExtension> {
  extension = new HotLspExtension(dependencies);
  await extension.activate(context);
  return extension;
}

export async function deactivate(): Promise<void> {
  const current = extension;
  extension = undefined;
  if (current !== undefined) {
    await current.stopServer();
  }
}
