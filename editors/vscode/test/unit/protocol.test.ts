// Tests of the protocol helpers: command arguments and notification validation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { commandArguments, isOutputParams, isStatusParams } from '../../src/protocol';

test('command arguments carry the workspace and extra fields in one object', () => {
  assert.deepEqual(commandArguments(undefined), []);
  assert.deepEqual(commandArguments('file:///w'), [{ workspace: 'file:///w' }]);
  assert.deepEqual(commandArguments('file:///w', { pid: 12 }), [{ pid: 12, workspace: 'file:///w' }]);
  assert.deepEqual(commandArguments(undefined, { pid: 12 }), [{ pid: 12 }]);
});

test('status and output notifications are validated', () => {
  assert.ok(isStatusParams({ workspace: 'file:///w', state: 'idle', pid: null }));
  assert.ok(!isStatusParams({ workspace: 'file:///w', state: 'dancing' }));
  assert.ok(!isStatusParams(null));
  assert.ok(!isStatusParams('idle'));
  assert.ok(isOutputParams({ workspace: 'file:///w', stream: 'stderr', text: 'x' }));
  assert.ok(!isOutputParams({ workspace: 'file:///w', stream: 'stdin', text: 'x' }));
});
