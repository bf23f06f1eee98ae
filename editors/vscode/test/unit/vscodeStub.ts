// A small in-memory stand-in for the `vscode` module, just large enough for the extension's
// code paths. Tests drive it through `stubState` (configuration, trust, folders, the answers of
// pickers) and read back what the extension did (registered commands, channel text, messages).

export class Disposable {
  constructor(private readonly onDispose: () => void = () => {}) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((item) => item.dispose()));
  }
  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private listeners: ((value: T) => void)[] = [];
  readonly event = (listener: (value: T) => void): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((other) => other !== listener);
    });
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) {
      listener(value);
    }
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  static file(fsPath: string): Uri {
    return new Uri('file', fsPath);
  }
  static parse(value: string): Uri {
    const match = /^([a-z-]+):\/\/(.*)$/.exec(value);
    return match ? new Uri(match[1], decodeURIComponent(match[2])) : new Uri('file', value);
  }
  get path(): string {
    return this.fsPath;
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export interface WorkspaceFolder {
  uri: Uri;
  name: string;
  index: number;
}

class OutputChannel {
  text = '';
  shown = 0;
  constructor(readonly name: string) {}
  append(value: string): void {
    this.text += value;
  }
  appendLine(value: string): void {
    this.text += `${value}\n`;
  }
  show(): void {
    this.shown += 1;
  }
  clear(): void {
    this.text = '';
  }
  dispose(): void {}
}

class StatusBarItem {
  text = '';
  tooltip: string | undefined;
  command: string | undefined;
  name: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  constructor(
    readonly id: string,
    readonly alignment: StatusBarAlignment,
    readonly priority: number,
  ) {}
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.visible = false;
  }
}

/** Layers of one configuration key, as `inspect()` reports them. */
export interface ConfigurationLayers {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

export interface ShownMessage {
  severity: 'information' | 'warning' | 'error';
  message: string;
  items: string[];
}

/** Everything the stub remembers; reset between tests. */
export const stubState = {
  trusted: true,
  workspaceFolders: [] as WorkspaceFolder[],
  /** Keys below `hot-lsp`, e.g. `program.path`. */
  configuration: new Map<string, ConfigurationLayers>(),
  commands: new Map<string, (...args: unknown[]) => unknown>(),
  executedCommands: [] as { command: string; args: unknown[] }[],
  outputChannels: [] as OutputChannel[],
  statusBarItems: [] as StatusBarItem[],
  messages: [] as ShownMessage[],
  /** Answer of the next message box (an item title) or undefined. */
  nextMessageChoice: undefined as string | undefined,
  /** Picks the QuickPick answer from the offered items. */
  quickPickAnswer: (items: unknown[]) => items[0] as unknown,
  quickPickItems: [] as unknown[],
  activeTextEditor: undefined as { document: { uri: Uri } } | undefined,
  onDidChangeConfiguration: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
  onDidGrantWorkspaceTrust: new EventEmitter<void>(),
  onDidChangeActiveTextEditor: new EventEmitter<unknown>(),
};

export function resetStub(): void {
  stubState.trusted = true;
  stubState.workspaceFolders = [];
  stubState.configuration = new Map();
  stubState.commands = new Map();
  stubState.executedCommands = [];
  stubState.outputChannels = [];
  stubState.statusBarItems = [];
  stubState.messages = [];
  stubState.nextMessageChoice = undefined;
  stubState.quickPickAnswer = (items) => items[0];
  stubState.quickPickItems = [];
  stubState.activeTextEditor = undefined;
  stubState.onDidChangeConfiguration = new EventEmitter();
  stubState.onDidGrantWorkspaceTrust = new EventEmitter();
  stubState.onDidChangeActiveTextEditor = new EventEmitter();
}

/** Fires a configuration change that affects the given full keys (e.g. `hot-lsp.program.path`). */
export function fireConfigurationChange(changedKeys: string[]): void {
  stubState.onDidChangeConfiguration.fire({
    affectsConfiguration: (section: string) =>
      changedKeys.some((key) => key === section || key.startsWith(`${section}.`)),
  });
}

function showMessage(severity: ShownMessage['severity']) {
  return (message: string, ...rest: unknown[]): Promise<string | undefined> => {
    const items = rest.filter((item): item is string => typeof item === 'string');
    stubState.messages.push({ severity, message, items });
    const choice = stubState.nextMessageChoice;
    stubState.nextMessageChoice = undefined;
    return Promise.resolve(choice !== undefined && items.includes(choice) ? choice : undefined);
  };
}

export const window = {
  get activeTextEditor() {
    return stubState.activeTextEditor;
  },
  createOutputChannel(name: string): OutputChannel {
    const channel = new OutputChannel(name);
    stubState.outputChannels.push(channel);
    return channel;
  },
  createStatusBarItem(id: string, alignment: StatusBarAlignment, priority: number): StatusBarItem {
    const item = new StatusBarItem(id, alignment, priority);
    stubState.statusBarItems.push(item);
    return item;
  },
  showInformationMessage: showMessage('information'),
  showWarningMessage: showMessage('warning'),
  showErrorMessage: showMessage('error'),
  showQuickPick(items: unknown[] | Promise<unknown[]>): Promise<unknown> {
    return Promise.resolve(items).then((resolved) => {
      stubState.quickPickItems = resolved;
      return stubState.quickPickAnswer(resolved);
    });
  },
  showWorkspaceFolderPick(): Promise<WorkspaceFolder | undefined> {
    return Promise.resolve(stubState.workspaceFolders[0]);
  },
  onDidChangeActiveTextEditor: (listener: (value: unknown) => void) =>
    stubState.onDidChangeActiveTextEditor.event(listener),
};

function getConfiguration(section: string) {
  const layersOf = (key: string): ConfigurationLayers | undefined =>
    stubState.configuration.get(section === 'hot-lsp' ? key : `${section}.${key}`);
  return {
    get<T>(key: string, fallback?: T): T | undefined {
      const layers = layersOf(key);
      const value =
        layers?.workspaceFolderValue ?? layers?.workspaceValue ?? layers?.globalValue ?? layers?.defaultValue;
      return (value as T | undefined) ?? fallback;
    },
    inspect(key: string) {
      const layers = layersOf(key);
      return layers === undefined ? undefined : { key: `${section}.${key}`, ...layers };
    },
    has(key: string): boolean {
      return layersOf(key) !== undefined;
    },
  };
}

export const workspace = {
  get isTrusted() {
    return stubState.trusted;
  },
  get workspaceFolders() {
    return stubState.workspaceFolders.length > 0 ? stubState.workspaceFolders : undefined;
  },
  getWorkspaceFolder(uri: Uri): WorkspaceFolder | undefined {
    return stubState.workspaceFolders.find((folder) => uri.fsPath.startsWith(`${folder.uri.fsPath}/`));
  },
  getConfiguration,
  onDidChangeConfiguration: (listener: (event: { affectsConfiguration(section: string): boolean }) => void) =>
    stubState.onDidChangeConfiguration.event(listener),
  onDidGrantWorkspaceTrust: (listener: () => void) => stubState.onDidGrantWorkspaceTrust.event(listener),
};

export const commands = {
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable {
    if (stubState.commands.has(id)) {
      // The real registry throws on a duplicate id: this is the clash the extension avoids.
      throw new Error(`command '${id}' already exists`);
    }
    stubState.commands.set(id, handler);
    return new Disposable(() => stubState.commands.delete(id));
  },
  executeCommand(command: string, ...args: unknown[]): Promise<unknown> {
    stubState.executedCommands.push({ command, args });
    const handler = stubState.commands.get(command);
    return Promise.resolve(handler ? handler(...args) : undefined);
  },
};
