import type { Registration } from '../core/plugin/index.js';
import { contentLocalRegistration } from '../core/content/index.js';
import { tarDiffRegistration } from '../core/diff/index.js';
import { eventsExchangeRegistration } from '../core/events/index.js';
import { gcSchedulerRegistration } from '../core/gc/index.js';
import { imagesStoreRegistration } from '../core/images/index.js';
import { metadataSqliteRegistration } from '../core/metadata/index.js';
import { runtimeOciRegistration } from '../core/runtime/index.js';
import { overlayfsSnapshotterRegistration } from '../core/snapshotter/index.js';
import { cniNetworkRegistration } from '../cni/index.js';
import { criGrpcRegistration } from '../cri/grpc-plugin.js';
import { criServiceRegistration } from '../cri/plugin.js';

/** Every plugin compiled into berthd. The registry orders them by their dependencies. */
export function builtinRegistrations(effectiveConfig: unknown): Registration[] {
  return [
    metadataSqliteRegistration,
    contentLocalRegistration,
    overlayfsSnapshotterRegistration,
    tarDiffRegistration,
    gcSchedulerRegistration,
    imagesStoreRegistration,
    cniNetworkRegistration,
    eventsExchangeRegistration,
    runtimeOciRegistration,
    criServiceRegistration(effectiveConfig),
    criGrpcRegistration,
  ] as Registration[];
}
