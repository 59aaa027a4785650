import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';

/** One published event as subscribers receive it. */
export interface Envelope<E = object> {
  topic: string;
  event: E;
  timestamp: Date;
}

/**
 * Which topics a subscriber wants: exact topics (`/tasks/exit`) or prefixes
 * written with a trailing `/*` (`/images/*` matches `/images/create`, ...).
 * No `topics` (or an empty list) means every topic.
 */
export interface EventFilter {
  topics?: string[];
}

export type EventHandler<E = object> = (envelope: Envelope<E>) => void;

interface Subscriber {
  exact: Set<string>;
  prefixes: string[];
  all: boolean;
  fn: EventHandler;
}

/**
 * In-process publish/subscribe with topic filters. Delivery is synchronous,
 * in subscription order, within `publish()`; a subscriber that throws is
 * logged and the others (and the publisher) carry on.
 */
export class EventExchange {
  private readonly subscribers = new Set<Subscriber>();

  constructor(private readonly log: Logger) {}

  publish(topic: string, event: object): void {
    if (this.subscribers.size === 0) return;
    const envelope: Envelope = { topic, event, timestamp: new Date() };
    // A subscriber may (un)subscribe while handling: deliver to the set as it was.
    for (const s of [...this.subscribers]) {
      if (!this.subscribers.has(s) || !matches(s, topic)) continue;
      try {
        s.fn(envelope);
      } catch (err) {
        this.log.error({ topic, err: errorMessage(err) }, 'event subscriber threw');
      }
    }
  }

  /** Calls `fn` for each event whose topic passes `filter`; returns the unsubscriber. */
  subscribe<E = object>(filter: EventFilter, fn: EventHandler<E>): () => void {
    const topics = filter.topics ?? [];
    const s: Subscriber = {
      exact: new Set(topics.filter((t) => !t.endsWith('/*'))),
      prefixes: topics.filter((t) => t.endsWith('/*')).map((t) => t.slice(0, -1)),
      all: topics.length === 0,
      fn: fn as EventHandler,
    };
    this.subscribers.add(s);
    return () => {
      this.subscribers.delete(s);
    };
  }

  /** Subscribers currently registered (for diagnostics and leak checks in tests). */
  get subscriberCount(): number {
    return this.subscribers.size;
  }
}

function matches(s: Subscriber, topic: string): boolean {
  return s.all || s.exact.has(topic) || s.prefixes.some((p) => topic.startsWith(p));
}
