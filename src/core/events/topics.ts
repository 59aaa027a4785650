/** Topics carried by the events exchange and the shape of each event. */
export const Topic = {
  /** A container's process exited (also exits that happened while berthd was down, found at recovery). */
  TaskExit: '/tasks/exit',
  /** A container's init was killed by the OOM killer of its memory cgroup. */
  TaskOom: '/tasks/oom',
  ImageCreate: '/images/create',
  ImageUpdate: '/images/update',
  ImageDelete: '/images/delete',
} as const;
export type Topic = (typeof Topic)[keyof typeof Topic];

export interface TaskExitEvent {
  id: string;
  pid: number;
  /** Exit code, 128+signal for a signal death; 255 when the monitor was lost and the code is unknown. */
  exitCode: number;
  exitedAt: Date;
  oomKilled: boolean;
}

export interface TaskOomEvent {
  id: string;
}

export interface ImageChangeEvent {
  name: string;
}
