import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

// One local function process kept running the way kubelet keeps a Deployment's pod running
// (restartPolicy: Always): any exit nobody asked for — a crash, kill -9, even exit code 0 — is
// logged with its exit code or signal and followed by a restart after a back-off that doubles up
// to a cap (CrashLoopBackOff) and starts over once a process has run for a while. stop() is the
// asked-for exit: SIGTERM (the function drains), SIGKILL after the grace period, no restart.
//
// Ctrl-C in a terminal signals the whole foreground process group, the functions included: they
// drain and exit on their own while the CLI begins its orderly stop. The CLI calls
// holdRestarts() in its signal handler — which runs before any child's exit is seen (the child
// has to handle the signal and drain first) — so those exits are not taken for crashes.

export interface SupervisedOptions {
  /** Arguments after `node`. */
  args: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Output lines of the process and the supervisor's own lines, without the label. */
  output: (line: string) => void;
  /** Restart after an unasked-for exit (default true); false = a plain child process. */
  restart?: boolean;
  /** First restart delay (default 1 s), doubling per consecutive crash up to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** A process that ran this long before exiting is restarted after the first delay again. */
  resetAfterMs?: number;
}

let held = false;
/** From now on no process of this CLI is restarted (it is shutting down). */
export function holdRestarts(): void {
  held = true;
}

const live = new Set<ChildProcess>();
let exitHook = false;
/** Children would outlive a CLI that exits without stopping them (an error): take them along. */
function killOnExit(proc: ChildProcess): void {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) p.kill('SIGKILL');
  });
}

export class SupervisedProcess {
  proc!: ChildProcess;
  restarts = 0;
  private stopping = false;
  private timer?: NodeJS.Timeout;
  private startedAt = 0;
  private crashes = 0;
  private exitedNow!: Promise<void>;

  constructor(private readonly opts: SupervisedOptions) {
    this.start();
  }

  /** Resolves when the current process has exited (and its last lines were read). */
  get exited(): Promise<void> {
    return this.exitedNow;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  private start(): void {
    const proc = spawn(process.execPath, this.opts.args, { cwd: this.opts.cwd, env: this.opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.startedAt = Date.now();
    killOnExit(proc);
    for (const stream of [proc.stdout!, proc.stderr!]) createInterface({ input: stream }).on('line', (l) => this.opts.output(l));
    this.exitedNow = new Promise<void>((done) => {
      let settled = false;
      const onEnd = (what: string) => {
        if (settled) return;
        settled = true;
        done();
        this.onExit(what);
      };
      // 'close' (not 'exit'): the last output lines have been read by then.
      proc.once('close', (code, signal) => onEnd(signal ? `signal ${signal}` : `code ${code}`));
      proc.once('error', (e) => onEnd(`error ${e.message}`));
    });
  }

  private onExit(what: string): void {
    if (this.stopping || held || this.opts.restart === false) return;
    const base = this.opts.restartDelayMs ?? 1000;
    if (Date.now() - this.startedAt >= (this.opts.resetAfterMs ?? 60_000)) this.crashes = 0;
    const delay = Math.min(base * 2 ** this.crashes, this.opts.maxRestartDelayMs ?? 30_000);
    this.crashes++;
    this.restarts++;
    this.opts.output(`exited unexpectedly (${what}); restarting in ${Math.round(delay / 100) / 10}s (restart ${this.restarts})`);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopping && !held) this.start();
    }, delay);
  }

  /** SIGTERM, then SIGKILL after graceMs; never restarted afterwards. */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const kill = setTimeout(() => {
      this.opts.output(`did not exit within ${graceMs} ms; SIGKILL`);
      this.proc.kill('SIGKILL');
    }, graceMs);
    await this.exitedNow;
    clearTimeout(kill);
  }
}
