// Makes `require('vscode')` resolve to the permissive stub that the real vscode-languageclient
// can run on. Import this first.

import Module = require('module');

const stubPath = require.resolve('./deepStub');
const moduleInternals = Module as unknown as {
  _resolveFilename(request: string, ...rest: unknown[]): string;
};
const originalResolve = moduleInternals._resolveFilename;
moduleInternals._resolveFilename = function resolveVscodeToDeepStub(this: unknown, request: string, ...rest: unknown[]) {
  if (request === 'vscode') {
    return stubPath;
  }
  return originalResolve.call(this, request, ...rest);
};
