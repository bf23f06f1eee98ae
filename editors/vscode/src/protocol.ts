// The names and message shapes of hot-lsp's LSP extensions (DESIGN.md 3.3), shared by the
// extension and its tests. No dependency on `vscode`.

/** Commands the server advertises through executeCommandProvider. */
export const SERVER_COMMANDS = {
  launch: 'hot-lsp.launch',
  attach: 'hot-lsp.attach',
  detach: 'hot-lsp.detach',
  stop: 'hot-lsp.stop',
  restart: 'hot-lsp.restart',
  undo: 'hot-lsp.undo',
  status: 'hot-lsp.status',
} as const;

export type ServerCommandName = keyof typeof SERVER_COMMANDS;

/** Notification carrying the session state, sent on every state change and after each swap. */
export const STATUS_NOTIFICATION = 'hot-lsp/status';
/** Notification carrying the launched program's stdout and stderr. */
export const OUTPUT_NOTIFICATION = 'hot-lsp/output';

export type ProgramState = 'idle' | 'building' | 'running' | 'swapping' | 'exited' | 'failed';

export interface SwapMicros {
  compile: number;
  link: number;
  swap: number;
}

export interface SwapSummary {
  seq: number;
  file: string;
  swapped: string[];
  added: string[];
  skipped: number;
  micros: SwapMicros;
}

/** The payload of `hot-lsp/status` and the result of the `hot-lsp.status` command. */
export interface StatusParams {
  workspace: string;
  state: ProgramState;
  pid: number | null;
  exitCode: number | null;
  signal: number | null;
  lastSwap: SwapSummary | null;
  message: string | null;
  /** The background baselines compiled since launch; null when none were queued. */
  baselines?: { done: number; total: number } | null;
}

/** The payload of `hot-lsp/output`. */
export interface OutputParams {
  workspace: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

/** The diagnostic codes hot-lsp publishes (diagnostics carry `source: "hot-lsp"`). */
export const DIAGNOSTIC_CODES = [
  'compile-error',
  'compile-warning',
  'undefined-symbol',
  'relocation-overflow',
  'unsupported-relocation',
  'protection-failure',
  'permission-denied',
  'layout-changed',
  'signature-changed',
  'initializer-not-applied',
  'function-too-small',
  'process-exited',
  'config-error',
] as const;

/**
 * The argument list for a server command: the optional workspace selector and any other fields
 * (e.g. `pid` for attach) go into the single object of the first argument.
 */
export function commandArguments(
  workspaceUri: string | undefined,
  extra: Record<string, unknown> = {},
): unknown[] {
  const argument: Record<string, unknown> = { ...extra };
  if (workspaceUri !== undefined) {
    argument.workspace = workspaceUri;
  }
  return Object.keys(argument).length === 0 ? [] : [argument];
}

const PROGRAM_STATES: readonly string[] = ['idle', 'building', 'running', 'swapping', 'exited', 'failed'];

/**
 * Checks a value received from the server before it reaches the UI: a malformed notification
 * is dropped (and logged) rather than breaking the status bar.
 */
export function isStatusParams(value: unknown): value is StatusParams {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const status = value as Record<string, unknown>;
  return typeof status.workspace === 'string' && typeof status.state === 'string' && PROGRAM_STATES.includes(status.state);
}

export function isOutputParams(value: unknown): value is OutputParams {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const output = value as Record<string, unknown>;
  return typeof output.text === 'string' && (output.stream === 'stdout' || output.stream === 'stderr');
}
