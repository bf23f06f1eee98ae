// Formats hot-lsp's status for people: the status-bar text, its tooltip and the Show Status
// message. No dependency on `vscode`.

import { StatusParams, SwapSummary } from './protocol';

/** A duration in microseconds as a short human string: "85 µs", "0.4 ms", "12 ms", "1.3 s". */
export function formatMicros(micros: number): string {
  if (!Number.isFinite(micros) || micros < 0) {
    return '? ms';
  }
  if (micros < 100) {
    return `${Math.round(micros)} µs`;
  }
  if (micros < 10_000) {
    return `${(micros / 1000).toFixed(1)} ms`;
  }
  if (micros < 1_000_000) {
    return `${Math.round(micros / 1000)} ms`;
  }
  return `${(micros / 1_000_000).toFixed(1)} s`;
}

function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}

/**
 * One line about a swap, e.g. "swapped 3 functions in 0.4 ms". The time is the swap phase alone:
 * that is how long the program was stopped; compile and link times are in the tooltip.
 */
export function formatSwap(swap: SwapSummary): string {
  const swapped = swap.swapped?.length ?? 0;
  const added = swap.added?.length ?? 0;
  if (swapped === 0 && added === 0) {
    return 'no changed functions';
  }
  const parts: string[] = [];
  if (swapped > 0) {
    parts.push(`swapped ${plural(swapped, 'function')}`);
  }
  if (added > 0) {
    parts.push(`added ${plural(added, 'function')}`);
  }
  return `${parts.join(', ')} in ${formatMicros(swap.micros?.swap ?? 0)}`;
}

/** The program state with its most useful detail: "running (pid 42)", "exited (code 1)". */
export function formatState(status: StatusParams): string {
  switch (status.state) {
    case 'running':
    case 'swapping':
      return status.pid !== null && status.pid !== undefined ? `${status.state} (pid ${status.pid})` : status.state;
    case 'exited':
      if (status.signal !== null && status.signal !== undefined) {
        return `exited (signal ${status.signal})`;
      }
      if (status.exitCode !== null && status.exitCode !== undefined) {
        return `exited (code ${status.exitCode})`;
      }
      return 'exited';
    case 'failed':
      return status.message ? `failed: ${status.message}` : 'failed';
    default:
      return status.state;
  }
}

/** Codicon shown before the text in the status bar, by state. */
export function stateIcon(status: StatusParams): string {
  switch (status.state) {
    case 'running':
      return '$(flame)';
    case 'building':
    case 'swapping':
      return '$(sync~spin)';
    case 'exited':
      return '$(debug-stop)';
    case 'failed':
      return '$(error)';
    default:
      return '$(circle-outline)';
  }
}

/** The status-bar text: state, then the last swap if there was one. */
export function statusBarText(status: StatusParams | undefined): string {
  if (status === undefined) {
    return '$(circle-outline) hot-lsp';
  }
  const state = status.state === 'failed' ? 'failed' : formatState(status);
  const swap = status.lastSwap ? ` · ${formatSwap(status.lastSwap)}` : '';
  return `${stateIcon(status)} hot-lsp: ${state}${swap}`;
}

function fileName(uri: string): string {
  const lastSlash = uri.lastIndexOf('/');
  return decodeURIComponent(lastSlash >= 0 ? uri.slice(lastSlash + 1) : uri);
}

/** Multi-line details: used for the status-bar tooltip and the Show Status message. */
export function describeStatus(status: StatusParams): string[] {
  const lines = [`Program: ${formatState(status)}`];
  if (status.message && status.state !== 'failed') {
    lines.push(`Message: ${status.message}`);
  }
  const swap = status.lastSwap;
  if (swap) {
    lines.push(`Last swap #${swap.seq} (${fileName(swap.file)}): ${formatSwap(swap)}`);
    const micros = swap.micros ?? { compile: 0, link: 0, swap: 0 };
    lines.push(
      `  compile ${formatMicros(micros.compile)}, link ${formatMicros(micros.link)}, swap ${formatMicros(micros.swap)}`,
    );
    if (swap.swapped?.length) {
      lines.push(`  swapped: ${swap.swapped.join(', ')}`);
    }
    if (swap.added?.length) {
      lines.push(`  added: ${swap.added.join(', ')}`);
    }
    if (swap.skipped) {
      lines.push(`  unchanged: ${plural(swap.skipped, 'atom')}`);
    }
  } else {
    lines.push('No swap yet: save a source file of the running program.');
  }
  lines.push(`Workspace: ${status.workspace}`);
  return lines;
}

/** Program output text as it should be appended to an output channel. */
export function normalizeOutput(text: string): string {
  // A pseudo-terminal turns "\n" into "\r\n"; an output channel would show the "\r" as a
  // second line break on some platforms.
  return text.replace(/\r\n/g, '\n');
}
