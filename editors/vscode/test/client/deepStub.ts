// A permissive extension of the `vscode` stub, enough for the real vscode-languageclient to load
// and run: anything the stub does not define becomes a harmless callable/constructible value
// (events return disposables, registrations return disposables). Accesses to undefined API are
// recorded so a test can show what the library touched.

import * as base from '../unit/vscodeStub';

export const missing = new Set<string>();

function disposable() {
  return { dispose() {} };
}

/** A value that can be called, constructed and extended, and whose properties are auto values. */
function autoValue(name: string): any {
  const target = function autoFunction() {
    return disposable();
  };
  return new Proxy(target, {
    get(fn, property) {
      if (property === 'prototype') {
        return (fn as any).prototype;
      }
      if (property === Symbol.toPrimitive || property === 'then') {
        return undefined;
      }
      if (property === 'dispose') {
        return () => {};
      }
      const key = `${name}.${String(property)}`;
      missing.add(key);
      return autoValue(key);
    },
    apply() {
      return disposable();
    },
    construct() {
      return {};
    },
  });
}

function permissive<T extends object>(name: string, object: T, extras: Record<string, unknown> = {}): T {
  return new Proxy(object, {
    get(target, property, receiver) {
      if (property in target) {
        return Reflect.get(target, property, receiver);
      }
      if (typeof property === 'string' && property in extras) {
        return extras[property];
      }
      if (typeof property === 'symbol' || property === 'then') {
        return undefined;
      }
      missing.add(`${name}.${property}`);
      return autoValue(`${name}.${property}`);
    },
  });
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(startLine: number | Position, startCharacter: number | Position, endLine?: number, endCharacter?: number) {
    if (startLine instanceof Position && startCharacter instanceof Position) {
      this.start = startLine;
      this.end = startCharacter;
    } else {
      this.start = new Position(startLine as number, startCharacter as number);
      this.end = new Position(endLine ?? 0, endCharacter ?? 0);
    }
  }
}

export enum DiagnosticSeverity {
  Error = 0,
  Warning = 1,
  Information = 2,
  Hint = 3,
}

export class Diagnostic {
  code: unknown;
  source: string | undefined;
  constructor(
    readonly range: Range,
    readonly message: string,
    readonly severity: DiagnosticSeverity = DiagnosticSeverity.Error,
  ) {}
}

/** What the client put into its diagnostic collections, by uri string. */
export const publishedDiagnostics = new Map<string, Diagnostic[]>();

export class CancellationTokenSource {
  private listeners: (() => void)[] = [];
  token = {
    isCancellationRequested: false,
    onCancellationRequested: (listener: () => void) => {
      this.listeners.push(listener);
      return disposable();
    },
  };
  cancel() {
    this.token.isCancellationRequested = true;
    this.listeners.forEach((listener) => listener());
  }
  dispose() {}
}

export class CancellationError extends Error {}

/** Document events the test fires (as VS Code would when the user opens or saves a file). */
export const documentEvents = {
  open: new base.EventEmitter<unknown>(),
  close: new base.EventEmitter<unknown>(),
  save: new base.EventEmitter<unknown>(),
  change: new base.EventEmitter<unknown>(),
};

const stubModule = {
  ...base,
  version: '1.95.0',
  Position,
  Range,
  Diagnostic,
  DiagnosticSeverity,
  CancellationTokenSource,
  CancellationError,
  env: permissive('env', { language: 'en', appName: 'stub', machineId: 'stub', sessionId: 'stub', uriScheme: 'vscode' }),
  languages: permissive('languages', {
    createDiagnosticCollection(name: string) {
      return {
        name,
        set(uri: { toString(): string } | [], diagnostics?: Diagnostic[]) {
          if (Array.isArray(uri)) {
            return;
          }
          publishedDiagnostics.set(uri.toString(), diagnostics ?? []);
        },
        delete(uri: { toString(): string }) {
          publishedDiagnostics.delete(uri.toString());
        },
        clear() {
          publishedDiagnostics.clear();
        },
        forEach() {},
        get(uri: { toString(): string }) {
          return publishedDiagnostics.get(uri.toString());
        },
        has(uri: { toString(): string }) {
          return publishedDiagnostics.has(uri.toString());
        },
        dispose() {},
      };
    },
    match() {
      return 10;
    },
  }),
  window: permissive('window', base.window),
  workspace: permissive('workspace', base.workspace, {
    textDocuments: [],
    onDidOpenTextDocument: documentEvents.open.event,
    onDidCloseTextDocument: documentEvents.close.event,
    onDidSaveTextDocument: documentEvents.save.event,
    onDidChangeTextDocument: documentEvents.change.event,
  }),
  commands: permissive('commands', base.commands),
};

module.exports = permissive('vscode', stubModule, {
  missing,
  publishedDiagnostics,
  documentEvents,
});
