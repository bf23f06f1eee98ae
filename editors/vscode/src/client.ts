// Starts and talks to the hot-lsp language server through vscode-languageclient.
//
// This is the only module that loads vscode-languageclient; the extension reaches it through
// the small HotLspClient interface, so the rest of the extension can be tested without it.

import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';
import { ServerSettings, answerConfigurationRequest, didChangeConfigurationSettings } from './settings';

/** What the extension needs from a running language client. */
export interface HotLspClient {
  start(): Promise<void>;
  stop(): Promise<void>;
  isRunning(): boolean;
  onNotification(method: string, handler: (params: unknown) => void): vscode.Disposable;
  executeCommand(command: string, args: unknown[]): Promise<unknown>;
  sendConfiguration(settings: ServerSettings): Promise<void>;
}

export interface ClientOptions {
  /** The hot-lsp executable (a name on PATH or a path). */
  serverPath: string;
  /** Working directory of the server process. */
  cwd: string | undefined;
  initializationOptions: ServerSettings | undefined;
  /** Where the server's stderr log and the client's own messages go. */
  logChannel: vscode.OutputChannel;
  /** The `hot-lsp` section to answer workspace/configuration with, for a scope (folder) uri. */
  configurationFor(scopeUri: string | undefined): ServerSettings;
}

/** The document types hot-lsp handles: it reacts to saves of C-family sources and headers. */
export const DOCUMENT_SELECTOR = ['c', 'cpp', 'objective-c', 'objective-cpp'].map((language) => ({
  scheme: 'file',
  language,
}));

export function createClient(options: ClientOptions): HotLspClient {
  const serverOptions: ServerOptions = {
    command: options.serverPath,
    args: ['--stdio'],
    // NO_COLOR: the server's log goes to an output channel, which shows ANSI colours as garbage.
    options: { cwd: options.cwd, env: { ...process.env, NO_COLOR: '1' } },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: DOCUMENT_SELECTOR,
    initializationOptions: options.initializationOptions,
    outputChannel: options.logChannel,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    middleware: {
      workspace: {
        // The client library would answer with every hot-lsp.* value including defaults; the
        // server must see only keys the user set, or defaults would override hot-lsp.toml.
        configuration: async (params, token, next) =>
          answerConfigurationRequest(params.items, await next(params, token), options.configurationFor),
      },
    },
  };
  const client = new LanguageClient('hot-lsp', 'hot-lsp', serverOptions, clientOptions);

  return {
    start: () => client.start(),
    stop: async () => {
      if (client.state !== State.Stopped) {
        await client.stop();
      }
    },
    isRunning: () => client.state === State.Running,
    onNotification: (method, handler) => client.onNotification(method, handler),
    executeCommand: (command, args) =>
      client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }),
    sendConfiguration: (settings) =>
      client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: didChangeConfigurationSettings(settings),
      }),
  };
}
