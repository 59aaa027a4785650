/**
 * Stop signals: CRI's `Signal` enum (ContainerConfig.stop_signal) and image
 * configs' StopSignal strings, as the signal name or number runc takes.
 */
import { Signal } from '../../generated/api.js';

/** Linux's SIGRTMIN as glibc programs see it (and as moby's signal table has it). */
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/** The runc signal for a CRI Signal value; '' for RUNTIME_DEFAULT (or an unknown value). */
export function criSignalName(signal: Signal): string {
  if (signal === Signal.RUNTIME_DEFAULT || signal === Signal.UNRECOGNIZED) return '';
  const name = Signal[signal];
  if (name === undefined) return '';
  if (name === 'SIGRTMIN') return String(SIGRTMIN);
  if (name === 'SIGRTMAX') return String(SIGRTMAX);
  const plus = /^SIGRTMINPLUS(\d+)$/.exec(name);
  if (plus) return String(SIGRTMIN + Number(plus[1]));
  const minus = /^SIGRTMAXMINUS(\d+)$/.exec(name);
  if (minus) return String(SIGRTMAX - Number(minus[1]));
  return name;
}

/** The CRI Signal for a stop signal string (name with or without SIG, or number); RUNTIME_DEFAULT when it has none. */
export function criSignalOf(stopSignal: string): Signal {
  const s = stopSignal.trim().toUpperCase();
  if (s === '') return Signal.RUNTIME_DEFAULT;
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    for (const value of Object.values(Signal)) {
      if (typeof value === 'number' && value > 0 && criSignalName(value) !== '' && signalNumber(criSignalName(value)) === n) return value;
    }
    return Signal.RUNTIME_DEFAULT;
  }
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  const value = (Signal as unknown as Record<string, number>)[name];
  return typeof value === 'number' ? (value as Signal) : Signal.RUNTIME_DEFAULT;
}

/** Numbers of the classic signals CRI names (x86/arm Linux), for numeric stop signals. */
const NUMBERS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGIOT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCLD: 17,
  SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26,
  SIGPROF: 27, SIGWINCH: 28, SIGIO: 29, SIGPOLL: 29, SIGPWR: 30, SIGSYS: 31,
};

function signalNumber(name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  return NUMBERS[name];
}
