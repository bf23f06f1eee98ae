// Makes `require('vscode')` resolve to the in-memory stub. Import this first in a test file
// that loads extension modules which import `vscode`.

import Module = require('module');

const stubPath = require.resolve('./vscodeStub');
const moduleInternals = Module as unknown as {
  _resolveFilename(request: string, ...rest: unknown[]): string;
};
const originalResolve = moduleInternals._resolveFilename;
moduleInternals._resolveFilename = function resolveVscodeToStub(this: unknown, request: string, ...rest: unknown[]) {
  if (request === 'vscode') {
    return stubPath;
  }
  return originalResolve.call(this, request, ...rest);
};

export * from './vscodeStub';
