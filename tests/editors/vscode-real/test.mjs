// Drives the hot-lsp extension in real VS Code (code-server's workbench in headless Chromium,
// through playwright-core) as a user would: keyboard and command palette, reading only what the
// workbench shows (status bar, output channels, Problems panel, notifications).
//
// Started by run.sh, which installs everything and cleans up; this file reads its inputs from
// the environment (see `need` below) and prints TAP-style lines ("ok - ..." / "not ok - ...")
// and "# pass N" / "# fail N". Screenshots of every step go to $ARTIFACTS/screenshots.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.log(`not ok - VS Code (real): environment variable ${name} is not set (run run.sh)`);
    console.log('# pass 0');
    console.log('# fail 1');
    process.exit(1);
  }
  return value;
}

const NODE = need('NODE');
const CODE_SERVER = need('CODE_SERVER');
const PLAYWRIGHT_DIR = need('PLAYWRIGHT_DIR');
const HOT_LSP = fs.realpathSync(need('HOT_LSP'));
const VSIX = need('VSIX');
const ARTIFACTS = need('ARTIFACTS');
const REPO = need('REPO');
const RUN_TOKEN = need('HOT_LSP_VSCODE_RUN');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const { chromium } = createRequire(path.join(PLAYWRIGHT_DIR, 'x.js'))('playwright-core');

// Generous: the CI machine is a busy 2-core box, and the first workbench load compiles a lot
// of JavaScript. Waits poll a condition and end as soon as it holds.
const STARTUP_TIMEOUT = 240_000;
const TIMEOUT = 120_000;
const shots = path.join(ARTIFACTS, 'screenshots');
fs.mkdirSync(shots, { recursive: true });

const STATUS_ITEM = '[id="hot-lsp.hot-lsp.hotLsp.status"]';

let passed = 0;
let failed = 0;
let shotIndex = 0;
const cleanups = [];

function elapsed(start) {
  return `${((Date.now() - start) / 1000).toFixed(1)} s`;
}

async function waitFor(what, probe, timeout = TIMEOUT) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) {
        return value;
      }
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() - start > timeout) {
      const why = last ? `; last error: ${last.message.split('\n')[0]}` : '';
      throw new Error(`timed out after ${timeout / 1000} s waiting for ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs a command to its end; rejects with its output when it fails. */
function run(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        resolve(output);
      } else {
        reject(new Error(`${path.basename(command)} ${args.join(' ')} exited with ${code}:\n${output}`));
      }
    });
  });
}

/** The pids of processes that are running `exe` and belong to this run. */
function processesOf(exe, token) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      if (fs.readlinkSync(`/proc/${entry}/exe`) !== exe) {
        continue;
      }
      const environ = fs.readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (environ.includes(`HOT_LSP_VSCODE_RUN=${token}`)) {
        pids.push(Number(entry));
      }
    } catch {
      // Gone meanwhile, or a kernel thread.
    }
  }
  return pids;
}

/**
 * A fresh code-server: its own user-data and extensions directories, the packaged extension
 * installed, the server path in Machine/settings.json (where a remote-style window reads
 * machine-scoped settings), loopback only, no auth. Every process it starts (extension host,
 * hot-lsp, the program) inherits HOT_LSP_VSCODE_RUN=token, by which run.sh finds leftovers.
 */
async function startCodeServer(name, { trust }) {
  const dir = path.join(ARTIFACTS, name);
  const userData = path.join(dir, 'user-data');
  const extensions = path.join(dir, 'extensions');
  fs.mkdirSync(path.join(userData, 'Machine'), { recursive: true });
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'Machine', 'settings.json'),
    JSON.stringify({ 'hot-lsp.serverPath': HOT_LSP }, null, 2),
  );
  // Quiet the workbench: no welcome page, tips or chat side bar over the editor.
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'workbench.startupEditor': 'none',
        'workbench.tips.enabled': false,
        'workbench.secondarySideBar.defaultVisibility': 'hidden',
        'chat.disableAIFeatures': true,
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'editor.minimap.enabled': false,
        // No completion popups while the test types: what lands in the file is what it typed.
        'editor.quickSuggestions': { other: false, comments: false, strings: false },
        'editor.suggestOnTriggerCharacters': false,
        // Restricted Mode without a modal prompt: the banner and the status-bar item say it.
        'security.workspace.trust.startupPrompt': 'never',
      },
      null,
      2,
    ),
  );
  const port = await freePort();
  const config = path.join(dir, 'config.yaml');
  fs.writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  // Its own HOME too: code-server, the extension host and VS Code's libraries write under
  // ~/.local/share, ~/.cache and ~/.config otherwise.
  const home = path.join(dir, 'home');
  fs.mkdirSync(home, { recursive: true });
  const env = { ...process.env, HOME: home, HOT_LSP_VSCODE_RUN: RUN_TOKEN };
  delete env.XDG_CONFIG_HOME;
  delete env.XDG_DATA_HOME;
  delete env.XDG_CACHE_HOME;
  const common = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  await run(NODE, [CODE_SERVER, ...common, '--install-extension', VSIX], { env });

  const flags = ['--disable-telemetry', '--disable-update-check', '--ignore-last-opened'];
  if (!trust) {
    flags.push('--disable-workspace-trust');
  }
  const log = fs.openSync(path.join(dir, 'code-server.log'), 'a');
  // detached: its own process group, killed as a whole at the end.
  const child = spawn(NODE, [CODE_SERVER, ...common, ...flags], {
    env,
    detached: true,
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  };
  cleanups.push(stop);
  const url = `http://127.0.0.1:${port}/`;
  await waitFor(`code-server (${name}) to answer on ${url}`, async () => {
    if (child.exitCode !== null) {
      throw new Error(`code-server exited with ${child.exitCode}; see ${dir}/code-server.log`);
    }
    const response = await fetch(`${url}healthz`);
    return response.ok;
  }, STARTUP_TIMEOUT);
  return { url, dir, stop, child };
}

function makeWorkspace(dir) {
  return run('sh', [path.join(REPO, 'tests/editors/fixture/make-workspace.sh'), dir]).then(() =>
    fs.realpathSync(dir),
  );
}

let browser;
/** The page of the step running now: its screenshot is taken when the step fails. */
let currentPage;

async function openWorkbench(server, folder) {
  if (!browser) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
      // Chromium writes crash-report settings under ~/.config: a private HOME keeps the user's clean.
      env: { ...process.env, HOME: path.join(ARTIFACTS, 'browser-home') },
    });
    cleanups.push(() => browser.close());
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  currentPage = page;
  await page.goto(`${server.url}?folder=${encodeURIComponent(folder)}`);
  await waitFor('the workbench to load', () => page.locator('.monaco-workbench .part.statusbar').isVisible(), STARTUP_TIMEOUT);
  return page;
}

async function screenshot(page, name) {
  shotIndex += 1;
  const file = path.join(shots, `${String(shotIndex).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file }).catch(() => undefined);
  return file;
}

async function statusText(page) {
  return ((await page.locator(STATUS_ITEM).textContent({ timeout: 1000 })) ?? '').trim();
}

async function waitStatus(page, what, pattern, timeout = TIMEOUT) {
  let last = '';
  try {
    return await waitFor(`the status bar to show ${what}`, async () => {
      last = await statusText(page);
      return pattern.exec(last);
    }, timeout);
  } catch (error) {
    error.message += ` (it showed "${last}")`;
    throw error;
  }
}

/** In the open quick pick: type `text`, wait until the selected entry is `accept(label)`, Enter. */
async function pick(page, text, what, accept) {
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type(text);
  await waitFor(what, async () => {
    const label = await page
      .locator('.quick-input-widget .monaco-list-row.focused')
      .first()
      .getAttribute('aria-label', { timeout: 1000 });
    return label !== null && accept(label);
  });
  await page.keyboard.press('Enter');
}

/** The command palette (F1): type the title, wait for it to be the selected entry, Enter. */
async function runCommand(page, title) {
  await page.keyboard.press('F1');
  await pick(page, title, `"${title}" in the command palette`, (label) => label.startsWith(title));
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
}

/** Shows an output channel by name, as "Output: Show Output Channels..." does. */
async function showChannel(page, name) {
  await page.keyboard.press('F1');
  await pick(page, 'Output: Show Output Channels', 'the "Show Output Channels" command', (l) =>
    l.startsWith('Output: Show Output Channels'),
  );
  await pick(page, name, `the output channel "${name}"`, (label) => label.split(',')[0].trim() === name);
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
}

/** Quick open (Ctrl+P) of a file of the workspace, then wait for its editor to have focus. */
async function quickOpen(page, file) {
  await page.keyboard.press('Control+P');
  await pick(page, file, `${file} in quick open`, (label) => label.includes(file));
  await waitFor(`the editor of ${file} to have focus`, async () => {
    const active = await page.locator('.tabs-container .tab.active').first().getAttribute('aria-label', { timeout: 1000 });
    const focused = await page.locator('.editor-group-container.active .monaco-editor.focused').count();
    return active !== null && active.includes(file) && focused > 0;
  });
}

/** Replaces the text of line `line` (after its indentation) with `text`, as typed. */
async function replaceLine(page, line, text) {
  await page.keyboard.press('Control+G');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type(String(line));
  await page.keyboard.press('Enter');
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
  await page.keyboard.press('End');
  await page.keyboard.press('Shift+Home');
  await page.keyboard.type(text);
}

async function save(page, file, expected) {
  await page.keyboard.press('Control+S');
  // The file on disk is the proof the keystrokes landed where intended.
  await waitFor(`${path.basename(file)} to be saved with "${expected}"`, () =>
    fs.readFileSync(file, 'utf8').includes(expected),
  );
}

/** The lines the output view shows (it follows the end of the channel). */
async function outputLines(page) {
  return page.evaluate(() => {
    const view = document.querySelector('.part.panel .output-view, .part.panel [id="workbench.panel.output"]');
    if (!view) {
      return [];
    }
    const lines = [...view.querySelectorAll('.view-line')];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((l) => l.textContent.replace(/\u00a0/g, ' '));
  });
}

async function waitOutput(page, what, predicate, timeout = TIMEOUT) {
  let last = [];
  try {
    return await waitFor(`the output channel to show ${what}`, async () => {
      last = await outputLines(page);
      return predicate(last);
    }, timeout);
  } catch (error) {
    error.message += `; it showed:\n#   ${last.slice(-8).join('\n#   ')}`;
    throw error;
  }
}

/** The last "value=V tick=T" line of the program output on screen. */
function lastValue(lines) {
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const m = /value=(\d+) tick=(\d+)/.exec(lines[i]);
    if (m) {
      return { value: Number(m[1]), tick: Number(m[2]) };
    }
  }
  return undefined;
}

async function waitProgramValue(page, value, minTick = 0) {
  return waitOutput(page, `value=${value} with tick > ${minTick}`, (lines) => {
    const last = lastValue(lines);
    return last && last.value === value && last.tick > minTick ? last : undefined;
  });
}

/** Problems panel rows as their accessible labels. */
async function problems(page) {
  return page.locator('.markers-panel .monaco-list-row').evaluateAll((rows) =>
    rows.map((r) => `${r.getAttribute('aria-label') ?? ''} | ${r.textContent}`),
  );
}

// ---- the steps -------------------------------------------------------------------------

const state = {};
const steps = [];
function step(name, body, { needs = [] } = {}) {
  steps.push({ name, body, needs });
}

step('trusted workspace: status bar goes to "running (pid N)"', async () => {
  const folder = await makeWorkspace(path.join(ARTIFACTS, 'workspace'));
  state.folder = folder;
  state.source = path.join(folder, 'app.c');
  state.returnLine = fs.readFileSync(state.source, 'utf8').split('\n').findIndex((l) => l.includes('return 1;')) + 1;
  state.server = await startCodeServer('trusted', { trust: false });
  state.page = await openWorkbench(state.server, folder);
  const m = await waitStatus(state.page, '"running (pid N)"', /hot-lsp: running \(pid (\d+)\)/, STARTUP_TIMEOUT);
  state.pid = Number(m[1]);
  if (!fs.existsSync(`/proc/${state.pid}`)) {
    throw new Error(`the status bar shows pid ${state.pid}, but no such process exists`);
  }
  const exe = fs.readlinkSync(`/proc/${state.pid}/exe`);
  if (exe !== path.join(folder, 'app')) {
    throw new Error(`pid ${state.pid} runs ${exe}, not the workspace's program`);
  }
  if (processesOf(HOT_LSP, RUN_TOKEN).length !== 1) {
    throw new Error(`expected one hot-lsp process of this run, found ${processesOf(HOT_LSP, RUN_TOKEN).length}`);
  }
  await screenshot(state.page, 'running');
  return `pid ${state.pid}`;
});

step('edit current_value and Ctrl+S: "swapped 1 function in … ms", new output, same pid', async () => {
  const page = state.page;
  await quickOpen(page, 'app.c');
  await runCommand(page, 'hot-lsp: Show Program Output');
  const before = await waitProgramValue(page, 1);
  await page.keyboard.press('Control+1');
  await replaceLine(page, state.returnLine, 'return 2;');
  await save(page, state.source, 'return 2;');
  const m = await waitStatus(page, '"swapped 1 function in … ms"', /running \(pid (\d+)\) · (swapped 1 function in [\d.]+ (?:ms|µs))/);
  if (Number(m[1]) !== state.pid) {
    throw new Error(`the pid changed from ${state.pid} to ${m[1]}: the program was restarted, not swapped`);
  }
  const after = await waitProgramValue(page, 2, before.tick);
  await screenshot(page, 'swapped');
  // The server's log channel reports the swap with its phases.
  await showChannel(page, 'hot-lsp');
  // Long lines wrap into several view lines: match the text they show together.
  const logged = await waitOutput(page, 'the swap of current_value', (lines) =>
    /swap #1 of \S*app\.c: swapped \[current_value\][^\n]*swap \d+ µs\)/.exec(lines.join(''))?.[0],
  );
  await screenshot(page, 'swap-logged');
  await runCommand(page, 'hot-lsp: Show Program Output');
  return `${m[2]}; program output went from value=1 tick=${before.tick} to value=2 tick=${after.tick}; log: "${logged.replace(/^.*?swap #/, 'swap #').slice(0, 90)}…"`;
}, { needs: [0] });

step('compile error on save: shown in Problems on its line, program unchanged', async () => {
  const page = state.page;
  await page.keyboard.press('Control+1');
  await replaceLine(page, state.returnLine, 'return no_such_variable;');
  await save(page, state.source, 'return no_such_variable;');
  await page.keyboard.press('Control+Shift+M');
  let rows = [];
  try {
    await waitFor('a Problems entry about no_such_variable', async () => {
      rows = await problems(page);
      return rows.some((r) => r.includes('no_such_variable'));
    });
  } catch (error) {
    error.message += `; Problems showed: ${JSON.stringify(rows)}`;
    throw error;
  }
  const row = rows.find((r) => r.includes('no_such_variable'));
  // The row reads "... [Ln 12, Col 12]"; the accessible label says "at line 12".
  const line = /Ln (\d+)|line (\d+)/.exec(row);
  const shown = line ? Number(line[1] ?? line[2]) : undefined;
  if (shown !== state.returnLine) {
    throw new Error(`the problem is on line ${shown}, expected ${state.returnLine}: ${row}`);
  }
  const status = await statusText(page);
  if (!status.includes(`running (pid ${state.pid})`)) {
    throw new Error(`after a refused save the status is "${status}"`);
  }
  await runCommand(page, 'hot-lsp: Show Program Output');
  await waitProgramValue(page, 2, (await waitProgramValue(page, 2)).tick);
  await screenshot(page, 'compile-error');
  return `line ${shown}: ${row.split('|')[0].trim().slice(0, 100)}`;
}, { needs: [1] });

step('fix and save again: value=3 swapped in, the problem is gone', async () => {
  const page = state.page;
  await page.keyboard.press('Control+1');
  await replaceLine(page, state.returnLine, 'return 3;');
  await save(page, state.source, 'return 3;');
  const before = await waitProgramValue(page, 3);
  await page.keyboard.press('Control+Shift+M');
  await waitFor('the Problems panel to be empty of no_such_variable', async () =>
    !(await problems(page)).some((r) => r.includes('no_such_variable')),
  );
  await runCommand(page, 'hot-lsp: Show Program Output');
  await screenshot(page, 'fixed');
  return `value=3 at tick ${before.tick}`;
}, { needs: [2] });

step('"hot-lsp: Undo Last Swap" from the palette: the program is back to value=2', async () => {
  const page = state.page;
  const before = await waitProgramValue(page, 3);
  await runCommand(page, 'hot-lsp: Undo Last Swap');
  await runCommand(page, 'hot-lsp: Show Program Output');
  const after = await waitProgramValue(page, 2, before.tick);
  const status = await statusText(page);
  if (!status.includes(`running (pid ${state.pid})`)) {
    throw new Error(`after undo the status is "${status}"`);
  }
  await screenshot(page, 'undone');
  return `value=3 tick=${before.tick} -> value=2 tick=${after.tick}, same pid`;
}, { needs: [3] });

step('"hot-lsp: Restart Program" from the palette: a new process runs the saved source', async () => {
  const page = state.page;
  const before = await waitProgramValue(page, 2);
  await runCommand(page, 'hot-lsp: Restart Program');
  const m = await waitStatus(page, 'running with a new pid', new RegExp(`running \\(pid (?!${state.pid}\\))(\\d+)\\)`));
  const pid = Number(m[1]);
  await runCommand(page, 'hot-lsp: Show Program Output');
  // A new process counts its ticks from 1 again; the saved source (return 3) is what it runs.
  const restarted = await waitOutput(page, `value=3 with the tick counter restarted below ${before.tick}`, (lines) => {
    const last = lastValue(lines);
    return last && last.value === 3 && last.tick < before.tick ? last : undefined;
  });
  await waitProgramValue(page, 3, restarted.tick);
  if (fs.existsSync(`/proc/${state.pid}`) && !fs.readFileSync(`/proc/${state.pid}/stat`, 'utf8').includes(') Z')) {
    throw new Error(`the old program (pid ${state.pid}) is still running`);
  }
  await screenshot(page, 'restarted');
  return `pid ${state.pid} -> ${pid}, ticks from ${restarted.tick} (were ${before.tick}), value=3 as saved`;
}, { needs: [4] });

step('trusted session ends: code-server, hot-lsp and the program are gone', async () => {
  await state.page.context().close();
  await state.server.stop();
  const left = await waitFor('the processes of the trusted session to end', () => {
    const pids = [...processesOf(HOT_LSP, RUN_TOKEN), ...processesOf(path.join(state.folder, 'app'), RUN_TOKEN)];
    return pids.length === 0 ? 'none left' : undefined;
  });
  return left;
}, { needs: [0] });

step('untrusted workspace (trust enabled): no server until the user trusts it', async () => {
  const folder = await makeWorkspace(path.join(ARTIFACTS, 'untrusted-workspace'));
  const server = await startCodeServer('untrusted', { trust: true });
  const page = await openWorkbench(server, folder);
  await waitFor('the Restricted Mode indicator', () =>
    page.locator('.statusbar-item', { hasText: 'Restricted Mode' }).first().isVisible(),
  STARTUP_TIMEOUT);
  await quickOpen(page, 'app.c');
  // The language mode "C" comes from an extension's manifest: the extensions are scanned.
  await waitFor('the language mode "C" in the status bar', async () =>
    (await page.locator('[id="status.editor.mode"]').textContent({ timeout: 1000 }))?.trim() === 'C',
  );
  // The palette lists no hot-lsp command (it offers "similar commands" or none): VS Code
  // disabled the extension for this workspace.
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible' });
  await page.keyboard.type('hot-lsp: Show Status');
  let offered = [];
  await waitFor('the palette to answer "hot-lsp: Show Status" without a hot-lsp command', async () => {
    const message = (await page.locator('.quick-input-widget .quick-input-message').textContent({ timeout: 1000 })) ?? '';
    offered = await page.locator('.quick-input-widget .monaco-list-row').evaluateAll((rows) =>
      rows.map((r) => r.getAttribute('aria-label') ?? ''),
    );
    return offered.length > 0 || /No matching commands/i.test(message);
  });
  if (offered.some((label) => label.startsWith('hot-lsp'))) {
    throw new Error(`the palette offers hot-lsp commands in an untrusted workspace: ${offered.join('; ')}`);
  }
  await screenshot(page, 'untrusted');
  await page.keyboard.press('Escape');
  const servers = processesOf(HOT_LSP, RUN_TOKEN);
  if (servers.length > 0 || (await page.locator(STATUS_ITEM).count()) > 0) {
    throw new Error(`a hot-lsp server runs in the untrusted workspace (pids ${servers.join(', ')})`);
  }
  // The control: trusting the workspace is all it takes for the server to start.
  await runCommand(page, 'Workspaces: Manage Workspace Trust');
  const trustButton = page.getByRole('button', { name: /^Trust( Folder)?$/ }).first();
  await trustButton.click();
  await waitStatus(page, '"running (pid N)" once trusted', /hot-lsp: running \(pid \d+\)/, STARTUP_TIMEOUT);
  await screenshot(page, 'trusted-later');
  await page.context().close();
  await server.stop();
  return 'no server while untrusted; running once trusted';
});

// ---- runner ----------------------------------------------------------------------------

const outcome = [];
try {
  for (const [index, s] of steps.entries()) {
    const blocked = s.needs.find((n) => !outcome[n]);
    if (blocked !== undefined) {
      outcome[index] = false;
      failed += 1;
      console.log(`not ok - VS Code (real): ${s.name} # not run: step "${steps[blocked].name}" failed`);
      continue;
    }
    const start = Date.now();
    try {
      const detail = await s.body();
      outcome[index] = true;
      passed += 1;
      console.log(`ok - VS Code (real): ${s.name} (${detail}; ${elapsed(start)})`);
    } catch (error) {
      outcome[index] = false;
      failed += 1;
      const shot = currentPage && !currentPage.isClosed() ? await screenshot(currentPage, `FAILED-${index + 1}`) : undefined;
      console.log(`not ok - VS Code (real): ${s.name} (after ${elapsed(start)})`);
      console.log(`# step ${index + 1} failed: ${error.message.split('\n').join('\n# ')}`);
      if (shot) {
        console.log(`# screenshot: ${shot}`);
      }
    }
  }
} finally {
  for (const cleanup of cleanups.reverse()) {
    await Promise.resolve()
      .then(cleanup)
      .catch(() => undefined);
  }
}
console.log(`# screenshots: ${shots}`);
console.log(`# pass ${passed}`);
console.log(`# fail ${failed}`);
process.exitCode = failed === 0 ? 0 : 1;
