import { readFile } from 'node:fs/promises';

/**
 * A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat),
 * or undefined when there is no such process. Together with the pid it names
 * one process for good: a recycled pid has a different start time.
 */
export async function processStartTime(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19]. A zombie has exited already.
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  const ticks = Number(rest[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** True while `pid` is the same live process that had `startTime`. */
export async function isSameProcess(pid: number, startTime: number): Promise<boolean> {
  return (await processStartTime(pid)) === startTime;
}

/** Resident and proportional set size of a process in bytes (from /proc/<pid>/smaps_rollup). */
export async function processMemory(pid: number): Promise<{ rss: number; pss: number } | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: field('Rss'), pss: field('Pss') };
}
