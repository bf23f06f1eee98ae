// The status-bar item: the program state and the last swap of the workspace folder the user is
// looking at, kept up to date from `hot-lsp/status` notifications.

import * as vscode from 'vscode';
import { StatusParams } from './protocol';
import { describeStatus, statusBarText } from './statusText';

export class StatusBarController implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  /** The latest status of each workspace folder, by folder uri. */
  private readonly statuses = new Map<string, StatusParams>();
  /** The folder whose status arrived last: shown when the active editor belongs to none. */
  private lastUpdated: string | undefined;
  private serverProblem: string | undefined;

  constructor(showStatusCommand: string) {
    this.item = vscode.window.createStatusBarItem('hotLsp.status', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'hot-lsp';
    this.item.command = showStatusCommand;
    this.render();
    this.item.show();
  }

  /** Records a status (from a notification or the status command) and redraws. */
  update(status: StatusParams): void {
    this.statuses.set(status.workspace, status);
    this.lastUpdated = status.workspace;
    this.serverProblem = undefined;
    this.render();
  }

  /** Shows that the server is not available (not found, crashed, untrusted workspace). */
  setServerProblem(problem: string | undefined): void {
    this.serverProblem = problem;
    this.render();
  }

  /**
   * The status of the folder of the active editor (none yet while its session starts: never
   * another folder's, whose pid would pass for this one's), else, for an editor outside every
   * folder, the most recently updated one.
   */
  current(): StatusParams | undefined {
    const activeUri = vscode.window.activeTextEditor?.document.uri;
    const folder = activeUri !== undefined ? vscode.workspace.getWorkspaceFolder(activeUri) : undefined;
    if (folder !== undefined) {
      return this.statuses.get(folder.uri.toString());
    }
    return this.lastUpdated !== undefined ? this.statuses.get(this.lastUpdated) : undefined;
  }

  /** Redraws; also called when the active editor changes. */
  render(): void {
    if (this.serverProblem !== undefined) {
      this.item.text = '$(warning) hot-lsp: off';
      this.item.tooltip = this.serverProblem;
      this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
      return;
    }
    const status = this.current();
    this.item.text = statusBarText(status);
    this.item.tooltip = status ? describeStatus(status).join('\n') : 'hot-lsp is starting';
    this.item.backgroundColor =
      status?.state === 'failed' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }

  get text(): string {
    return this.item.text;
  }

  dispose(): void {
    this.item.dispose();
  }
}
