// Turns the user's `hot-lsp.*` settings into the configuration object that hot-lsp expects as
// initializationOptions and in workspace/didChangeConfiguration (DESIGN.md 3.1).
//
// This module has no dependency on `vscode`, so it can be tested with plain objects.

/** The subset of vscode's `WorkspaceConfiguration.inspect()` result that we read. */
export interface InspectedValue {
  readonly defaultValue?: unknown;
  readonly globalValue?: unknown;
  readonly workspaceValue?: unknown;
  readonly workspaceFolderValue?: unknown;
  readonly globalLanguageValue?: unknown;
  readonly workspaceLanguageValue?: unknown;
  readonly workspaceFolderLanguageValue?: unknown;
}

/** Anything that can inspect a key of the `hot-lsp` section (a vscode WorkspaceConfiguration). */
export interface SettingsInspector {
  inspect(key: string): InspectedValue | undefined;
}

/** The server-side configuration shape: the keys of hot-lsp.toml, in the same nesting. */
export interface ServerSettings {
  program?: {
    path?: string;
    args?: string[];
    cwd?: string;
    env?: Record<string, string>;
    launch?: 'auto' | 'manual';
    disable_aslr?: boolean;
  };
  compile?: {
    database?: string;
    command?: string;
  };
}

type Validator = (value: unknown) => boolean;

const isString: Validator = (value) => typeof value === 'string';
const isBoolean: Validator = (value) => typeof value === 'boolean';
const isStringArray: Validator = (value) =>
  Array.isArray(value) && value.every((item) => typeof item === 'string');
const isStringMap: Validator = (value) =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every((item) => typeof item === 'string');
const isLaunchMode: Validator = (value) => value === 'auto' || value === 'manual';

/** One VS Code setting that maps to one key of hot-lsp.toml. */
export interface SettingMapping {
  /** The key below the `hot-lsp` section in VS Code, e.g. `program.disableAslr`. */
  readonly setting: string;
  /** The hot-lsp.toml table it belongs to. */
  readonly table: 'program' | 'compile';
  /** The key inside that table, e.g. `disable_aslr`. */
  readonly key: string;
  /** What a valid value looks like, in words for the warning shown on a bad value. */
  readonly expected: string;
  readonly isValid: Validator;
}

/**
 * Every setting that is forwarded to the server. `hot-lsp.serverPath` is not among them: it
 * only tells the extension which executable to start.
 */
export const FORWARDED_SETTINGS: readonly SettingMapping[] = [
  { setting: 'program.path', table: 'program', key: 'path', expected: 'a string', isValid: isString },
  { setting: 'program.args', table: 'program', key: 'args', expected: 'an array of strings', isValid: isStringArray },
  { setting: 'program.cwd', table: 'program', key: 'cwd', expected: 'a string', isValid: isString },
  { setting: 'program.env', table: 'program', key: 'env', expected: 'an object of strings', isValid: isStringMap },
  { setting: 'program.launch', table: 'program', key: 'launch', expected: '"auto" or "manual"', isValid: isLaunchMode },
  { setting: 'program.disableAslr', table: 'program', key: 'disable_aslr', expected: 'true or false', isValid: isBoolean },
  { setting: 'compile.database', table: 'compile', key: 'database', expected: 'a string', isValid: isString },
  { setting: 'compile.command', table: 'compile', key: 'command', expected: 'a string', isValid: isString },
];

/**
 * The value the user set explicitly, in VS Code's precedence order (most specific scope first),
 * or undefined when the user set nothing and only the default applies. The server must see
 * only explicit keys: a key the client sends wins over hot-lsp.toml, so sending defaults would
 * silently override the workspace's file.
 */
export function explicitValue(inspected: InspectedValue | undefined): unknown {
  if (inspected === undefined) {
    return undefined;
  }
  const scopesMostSpecificFirst = [
    inspected.workspaceFolderLanguageValue,
    inspected.workspaceFolderValue,
    inspected.workspaceLanguageValue,
    inspected.workspaceValue,
    inspected.globalLanguageValue,
    inspected.globalValue,
  ];
  return scopesMostSpecificFirst.find((value) => value !== undefined);
}

/** The forwarded configuration plus the settings that were ignored because of a bad value. */
export interface BuiltSettings {
  readonly settings: ServerSettings;
  readonly problems: string[];
}

/** Builds the server configuration from the explicitly set `hot-lsp.*` settings only. */
export function buildServerSettings(inspector: SettingsInspector): BuiltSettings {
  const settings: ServerSettings = {};
  const problems: string[] = [];
  for (const mapping of FORWARDED_SETTINGS) {
    const value = explicitValue(inspector.inspect(mapping.setting));
    if (value === undefined) {
      continue;
    }
    if (!mapping.isValid(value)) {
      problems.push(
        `hot-lsp.${mapping.setting} must be ${mapping.expected}, not ${JSON.stringify(value)}; it is ignored.`,
      );
      continue;
    }
    const table = (settings[mapping.table] ??= {}) as Record<string, unknown>;
    table[mapping.key] = value;
  }
  return { settings, problems };
}

/** True when the user set no forwarded key at all. */
export function isEmptySettings(settings: ServerSettings): boolean {
  return settings.program === undefined && settings.compile === undefined;
}

/**
 * The initializationOptions to send. With nothing set we send nothing (undefined): hot-lsp treats
 * explicit client configuration as opting the workspace in, and an empty object must not look
 * like one.
 */
export function initializationOptions(settings: ServerSettings): ServerSettings | undefined {
  return isEmptySettings(settings) ? undefined : settings;
}

/** The `settings` payload of workspace/didChangeConfiguration: the `hot-lsp` section. */
export function didChangeConfigurationSettings(settings: ServerSettings): { 'hot-lsp': ServerSettings } {
  return { 'hot-lsp': settings };
}

/**
 * The answer to workspace/configuration: the `hot-lsp` section comes from configurationFor
 * (explicit settings only), every other section from the client library's default answer.
 */
export function answerConfigurationRequest<ErrorAnswer>(
  items: readonly { section?: string; scopeUri?: string }[],
  defaultAnswers: unknown[] | ErrorAnswer,
  configurationFor: (scopeUri: string | undefined) => ServerSettings,
): unknown[] | ErrorAnswer {
  if (!Array.isArray(defaultAnswers)) {
    // An error answer (ResponseError) passes through unchanged.
    return defaultAnswers;
  }
  return items.map((item, index) =>
    item.section === 'hot-lsp' ? configurationFor(item.scopeUri) : defaultAnswers[index],
  );
}
