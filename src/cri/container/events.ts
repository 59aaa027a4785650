/**
 * CRI container lifecycle events (GetContainerEvents, kubelet's evented
 * PLEG). They travel over the events exchange on `/containers/<type>` with a
 * ContainerEventResponse as the event, so sandbox lifecycle code can publish
 * its own (container_id = the sandbox id) on the same topics.
 */
import { ContainerEventType, type ContainerEventResponse } from '../../generated/api.js';

export const ContainerEventTopic = {
  [ContainerEventType.CONTAINER_CREATED_EVENT]: '/containers/create',
  [ContainerEventType.CONTAINER_STARTED_EVENT]: '/containers/start',
  [ContainerEventType.CONTAINER_STOPPED_EVENT]: '/containers/stop',
  [ContainerEventType.CONTAINER_DELETED_EVENT]: '/containers/delete',
} as const;

/** The filter that subscribes to every container lifecycle topic. */
export const CONTAINER_EVENT_TOPICS = ['/containers/*'];

type KnownType = keyof typeof ContainerEventTopic;

export function publishContainerEvent(events: { publish(topic: string, event: object): void }, event: ContainerEventResponse): void {
  const topic = ContainerEventTopic[event.containerEventType as KnownType];
  if (topic === undefined) return;
  events.publish(topic, event);
}
