/**
 * `events.exchange`: the in-process event bus. The runtime publishes task
 * exits and OOMs, the images plugin may publish image changes, and the CRI
 * service subscribes to keep its in-memory view current.
 */
import { PluginType, type Registration } from '../plugin/types.js';
import { EventExchange } from './exchange.js';

export { EventExchange, type Envelope, type EventFilter, type EventHandler } from './exchange.js';
export { Topic, type ImageChangeEvent, type TaskExitEvent, type TaskOomEvent } from './topics.js';

export const eventsExchangeRegistration: Registration<unknown, EventExchange> = {
  type: PluginType.Events,
  id: 'exchange',
  init(ctx) {
    return new EventExchange(ctx.log);
  },
};
