// Lists the processes hot-lsp could attach to: those of the current user, read from /proc.
// No dependency on `vscode`.

import { promises as fs } from 'fs';
import * as path from 'path';

export interface ProcessInfo {
  pid: number;
  /** The short name from /proc/PID/comm. */
  name: string;
  /** The full command line, arguments joined by spaces. */
  cmdline: string;
}

export interface ListProcessesOptions {
  /** Where procfs is mounted; tests point it at a fake tree. */
  procRoot?: string;
  /** Only processes whose real uid is this one are listed (ptrace needs the same user). */
  uid?: number;
  /** Pids left out of the list, e.g. the extension host itself. */
  excludePids?: readonly number[];
}

/** The real uid of a process from the `Uid:` line of /proc/PID/status, or undefined. */
export function parseRealUid(statusText: string): number | undefined {
  const match = /^Uid:\s+(\d+)/m.exec(statusText);
  return match ? Number(match[1]) : undefined;
}

/** /proc/PID/cmdline holds NUL-terminated arguments; kernel threads have none. */
export function parseCmdline(raw: Buffer): string {
  return raw
    .toString('utf8')
    .split('\0')
    .filter((argument) => argument.length > 0)
    .join(' ');
}

async function readProcess(procRoot: string, pid: number, uid: number | undefined): Promise<ProcessInfo | undefined> {
  const directory = path.join(procRoot, String(pid));
  try {
    if (uid !== undefined) {
      const status = await fs.readFile(path.join(directory, 'status'), 'utf8');
      if (parseRealUid(status) !== uid) {
        return undefined;
      }
    }
    const cmdline = parseCmdline(await fs.readFile(path.join(directory, 'cmdline')));
    if (cmdline.length === 0) {
      // Kernel threads and zombies: nothing to attach to.
      return undefined;
    }
    const name = (await fs.readFile(path.join(directory, 'comm'), 'utf8').catch(() => '')).trim();
    return { pid, name: name || path.basename(cmdline.split(' ')[0]), cmdline };
  } catch {
    // The process exited while we were reading it, or we may not read it: not attachable.
    return undefined;
  }
}

/** The current user's processes, newest (highest pid) first. */
export async function listProcesses(options: ListProcessesOptions = {}): Promise<ProcessInfo[]> {
  const procRoot = options.procRoot ?? '/proc';
  const uid = options.uid ?? (typeof process.getuid === 'function' ? process.getuid() : undefined);
  const excluded = new Set(options.excludePids ?? [process.pid]);
  const entries = await fs.readdir(procRoot);
  const pids = entries
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => !excluded.has(pid));
  const processes = await Promise.all(pids.map((pid) => readProcess(procRoot, pid, uid)));
  return processes
    .filter((info): info is ProcessInfo => info !== undefined)
    .sort((a, b) => b.pid - a.pid);
}

/** A QuickPick row for a process. */
export function processPickItem(info: ProcessInfo): { label: string; description: string; pid: number } {
  return { label: `${info.pid}  ${info.name}`, description: info.cmdline, pid: info.pid };
}
