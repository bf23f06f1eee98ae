// Tests of the settings -> server configuration mapping: only explicit keys, toml key names.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FORWARDED_SETTINGS,
  InspectedValue,
  answerConfigurationRequest,
  buildServerSettings,
  didChangeConfigurationSettings,
  explicitValue,
  initializationOptions,
} from '../../src/settings';

function inspector(values: Record<string, InspectedValue>) {
  return { inspect: (key: string) => values[key] };
}

test('a key that only has its default is not sent', () => {
  const built = buildServerSettings(
    inspector({
      'program.launch': { defaultValue: 'auto' },
      'program.disableAslr': { defaultValue: false },
    }),
  );
  assert.deepEqual(built.settings, {});
  assert.deepEqual(built.problems, []);
  assert.equal(initializationOptions(built.settings), undefined);
});

test('explicit keys are sent in the hot-lsp.toml shape with toml key names', () => {
  const built = buildServerSettings(
    inspector({
      'program.path': { globalValue: 'build/app' },
      'program.args': { workspaceValue: ['--fast', 'x'] },
      'program.env': { workspaceValue: { RUST_LOG: 'debug' } },
      'program.disableAslr': { defaultValue: false, workspaceValue: true },
      'program.launch': { defaultValue: 'auto', globalValue: 'manual' },
      'compile.database': { workspaceFolderValue: 'out/compile_commands.json' },
    }),
  );
  assert.deepEqual(built.settings, {
    program: {
      path: 'build/app',
      args: ['--fast', 'x'],
      env: { RUST_LOG: 'debug' },
      disable_aslr: true,
      launch: 'manual',
    },
    compile: { database: 'out/compile_commands.json' },
  });
  assert.deepEqual(initializationOptions(built.settings), built.settings);
});

test('an explicit false or empty value is still explicit', () => {
  const built = buildServerSettings(
    inspector({
      'program.disableAslr': { defaultValue: false, globalValue: false },
      'program.args': { workspaceValue: [] },
    }),
  );
  assert.deepEqual(built.settings, { program: { disable_aslr: false, args: [] } });
});

test('the most specific scope wins', () => {
  assert.equal(explicitValue({ globalValue: 'a', workspaceValue: 'b', workspaceFolderValue: 'c' }), 'c');
  assert.equal(explicitValue({ globalValue: 'a', workspaceValue: 'b' }), 'b');
  assert.equal(explicitValue({ globalValue: 'a' }), 'a');
  assert.equal(explicitValue({ defaultValue: 'd' }), undefined);
  assert.equal(explicitValue(undefined), undefined);
  assert.equal(explicitValue({ globalValue: 'a', workspaceLanguageValue: 'l' }), 'l');
});

test('values of the wrong type are dropped and reported', () => {
  const built = buildServerSettings(
    inspector({
      'program.args': { globalValue: '--not-an-array' },
      'program.launch': { globalValue: 'sometimes' },
      'program.env': { globalValue: { N: 1 } },
      'program.path': { globalValue: 'ok' },
    }),
  );
  assert.deepEqual(built.settings, { program: { path: 'ok' } });
  assert.equal(built.problems.length, 3);
  assert.match(built.problems.join('\n'), /hot-lsp\.program\.args must be an array of strings/);
  assert.match(built.problems.join('\n'), /hot-lsp\.program\.launch must be "auto" or "manual"/);
});

test('didChangeConfiguration carries the hot-lsp section', () => {
  assert.deepEqual(didChangeConfigurationSettings({ compile: { command: 'cc -c {file} -o {output}' } }), {
    'hot-lsp': { compile: { command: 'cc -c {file} -o {output}' } },
  });
  // Clearing every key must still tell the server, with an empty section.
  assert.deepEqual(didChangeConfigurationSettings({}), { 'hot-lsp': {} });
});

test('every forwarded setting maps to a distinct toml key', () => {
  const keys = FORWARDED_SETTINGS.map((mapping) => `${mapping.table}.${mapping.key}`);
  assert.equal(new Set(keys).size, keys.length);
  assert.ok(keys.includes('program.disable_aslr'));
});

test('workspace/configuration answers the hot-lsp section with explicit settings only', () => {
  const scopes: (string | undefined)[] = [];
  const answer = answerConfigurationRequest(
    [{ section: 'hot-lsp', scopeUri: 'file:///w' }, { section: 'editor' }, { section: 'hot-lsp' }],
    [{ program: { launch: 'auto' } }, { tabSize: 4 }, { serverPath: 'hot-lsp' }],
    (scopeUri) => {
      scopes.push(scopeUri);
      return { program: { path: 'app' } };
    },
  );
  assert.deepEqual(answer, [{ program: { path: 'app' } }, { tabSize: 4 }, { program: { path: 'app' } }]);
  assert.deepEqual(scopes, ['file:///w', undefined]);
  const error = { code: -32603, message: 'failed' };
  assert.equal(answerConfigurationRequest([{ section: 'hot-lsp' }], error, () => ({})), error);
});
