// Checks package.json against the code: command ids, settings, activation and workspace trust.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import './registerVscodeStub';
import { EXTENSION_COMMANDS } from '../../src/extension';
import { SERVER_COMMANDS } from '../../src/protocol';
import { FORWARDED_SETTINGS } from '../../src/settings';

const extensionRoot = path.resolve(__dirname, '..', '..', '..');
const manifest = JSON.parse(readFileSync(path.join(extensionRoot, 'package.json'), 'utf8'));

test('contributed commands are exactly the extension commands, none with a server id', () => {
  const contributed: string[] = manifest.contributes.commands.map((command: { command: string }) => command.command);
  assert.deepEqual([...contributed].sort(), Object.values(EXTENSION_COMMANDS).sort());
  const serverIds: string[] = Object.values(SERVER_COMMANDS);
  for (const id of contributed) {
    assert.ok(!id.startsWith('hot-lsp.'), `${id} would clash with the server's executeCommandProvider ids`);
    assert.ok(!serverIds.includes(id));
  }
  for (const command of manifest.contributes.commands) {
    assert.equal(command.category, 'hot-lsp');
    assert.ok(command.title.length > 0);
  }
});

test('every forwarded setting and the server path are declared, with no default for forwarded ones', () => {
  const properties = manifest.contributes.configuration.properties;
  assert.equal(properties['hot-lsp.serverPath'].default, 'hot-lsp');
  for (const mapping of FORWARDED_SETTINGS) {
    const property = properties[`hot-lsp.${mapping.setting}`];
    assert.ok(property, `hot-lsp.${mapping.setting} is not declared`);
    // A declared default would be shown as the value in the UI while the server uses the file's.
    assert.equal(property.default, undefined, `hot-lsp.${mapping.setting} must not declare a default`);
  }
  assert.deepEqual(properties['hot-lsp.program.launch'].enum, ['auto', 'manual']);
  assert.equal(properties['hot-lsp.program.disableAslr'].type, 'boolean');
  assert.equal(Object.keys(properties).length, FORWARDED_SETTINGS.length + 1);
});

test('activation and trust', () => {
  for (const event of [
    'onLanguage:c',
    'onLanguage:cpp',
    'onLanguage:objective-c',
    'onLanguage:objective-cpp',
    'workspaceContains:hot-lsp.toml',
    'workspaceContains:compile_commands.json',
  ]) {
    assert.ok(manifest.activationEvents.includes(event), `missing activation event ${event}`);
  }
  assert.equal(manifest.capabilities.untrustedWorkspaces.supported, false);
  assert.equal(manifest.main, './out/src/extension.js');
  assert.ok(existsSync(path.join(extensionRoot, manifest.main)), 'the compiled entry point is missing');
  assert.ok(manifest.dependencies['vscode-languageclient']);
});
