/**
 * CRI views of the in-memory container records: Container (ListContainers)
 * and ContainerStatus.
 * Pure functions of the records: nothing here waits on the runtime or disk.
 */
import { ContainerState, ListContainersResponse, type Container, type ContainerStatus, type ImageSpec } from '../../generated/api.js';
import { EntryCache } from '../encoded-list.js';
import type { ContainerRecord, ContainerRecordState } from '../store/index.js';
import { criSignalOf } from './signals.js';

const STATES: Record<ContainerRecordState, ContainerState> = {
  created: ContainerState.CONTAINER_CREATED,
  running: ContainerState.CONTAINER_RUNNING,
  exited: ContainerState.CONTAINER_EXITED,
  unknown: ContainerState.CONTAINER_UNKNOWN,
};

export function criState(state: ContainerRecordState): ContainerState {
  return STATES[state];
}

/** The record state a CRI state filter names; undefined for values no record has. */
export function recordStateOf(state: ContainerState): ContainerRecordState | undefined {
  for (const [name, value] of Object.entries(STATES) as Array<[ContainerRecordState, ContainerState]>) {
    if (value === state) return name;
  }
  return undefined;
}

/** The image as the container's config asked for it (the user's reference). */
function imageSpec(record: ContainerRecord): ImageSpec {
  const given = record.config.image;
  return {
    image: record.image.userSpecified || given?.image || record.image.id,
    annotations: { ...(given?.annotations ?? {}) },
    userSpecifiedImage: given?.userSpecifiedImage ?? '',
    runtimeHandler: given?.runtimeHandler ?? '',
    imageRef: '',
  };
}

export function toCriContainer(record: ContainerRecord): Container {
  return {
    id: record.id,
    podSandboxId: record.sandboxId,
    metadata: record.config.metadata,
    image: imageSpec(record),
    imageRef: record.image.ref,
    imageId: record.image.id,
    state: criState(record.state),
    createdAt: record.createdAt,
    labels: record.config.labels,
    annotations: record.config.annotations,
  };
}

/** ListContainersResponse bytes of records, each record's entry encoded once. */
export const containerList = new EntryCache<ContainerRecord, ListContainersResponse>(ListContainersResponse, (record) => ({
  containers: [toCriContainer(record)],
}));

export function toCriStatus(record: ContainerRecord): ContainerStatus {
  return {
    id: record.id,
    metadata: record.config.metadata,
    state: criState(record.state),
    createdAt: record.createdAt,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    exitCode: record.exitCode,
    image: imageSpec(record),
    imageRef: record.image.ref,
    imageId: record.image.id,
    reason: record.reason,
    message: record.message,
    labels: record.config.labels,
    annotations: record.config.annotations,
    mounts: record.mounts,
    logPath: record.logPath,
    resources: record.resources === undefined ? undefined : { linux: record.resources, windows: undefined },
    user: undefined,
    stopSignal: criSignalOf(record.stopSignal),
  };
}
