import { BerthError } from '../errors.js';
import { PluginErrorCode } from './errors.js';
import { pluginKey, type PluginKey, type PluginType } from './types.js';

/** The part of a registration the graph looks at. */
export interface GraphNode {
  readonly type: PluginType;
  readonly id: string;
  readonly requires?: readonly PluginType[];
}

/**
 * For each node, the indices of the nodes it depends on: every other node
 * whose type it requires. A plugin requiring its own type depends on the
 * other plugins of that type, never on itself.
 */
function dependencyIndices(nodes: readonly GraphNode[]): number[][] {
  return nodes.map((node, self) => {
    const wanted = new Set(node.requires ?? []);
    const deps: number[] = [];
    nodes.forEach((other, i) => {
      if (i !== self && wanted.has(other.type)) deps.push(i);
    });
    return deps;
  });
}

/**
 * Orders registrations so that every plugin comes after all plugins of the
 * types it requires. Among plugins free to go, registration order wins, so
 * the result is stable. Throws ERR_PLUGIN_DUPLICATE, ERR_PLUGIN_UNSATISFIED
 * or ERR_PLUGIN_CYCLE (in that order of checking) when no such order exists.
 */
export function orderRegistrations<R extends GraphNode>(registrations: readonly R[]): R[] {
  checkDuplicates(registrations);
  checkSatisfied(registrations);

  const deps = dependencyIndices(registrations);
  const placed = new Array<boolean>(registrations.length).fill(false);
  const order: R[] = [];
  while (order.length < registrations.length) {
    // The earliest registration whose dependencies are all placed.
    const next = registrations.findIndex((_, i) => !placed[i] && deps[i]!.every((d) => placed[d]));
    if (next < 0) throw cycleError(registrations, deps, placed);
    placed[next] = true;
    order.push(registrations[next]!);
  }
  return order;
}

function keyOf(node: GraphNode): PluginKey {
  return pluginKey(node.type, node.id);
}

function checkDuplicates(nodes: readonly GraphNode[]): void {
  const seen = new Set<PluginKey>();
  const dups = new Set<PluginKey>();
  for (const node of nodes) {
    const key = keyOf(node);
    if (seen.has(key)) dups.add(key);
    seen.add(key);
  }
  if (dups.size > 0) {
    const list = [...dups].join(', ');
    throw new BerthError('already-exists', PluginErrorCode.Duplicate, `plugin registered more than once: ${list}`, {
      context: { plugins: list },
    });
  }
}

function checkSatisfied(nodes: readonly GraphNode[]): void {
  const lacking: string[] = [];
  const keys: PluginKey[] = [];
  nodes.forEach((node, self) => {
    const missing = [...new Set(node.requires ?? [])].filter(
      (type) => !nodes.some((other, i) => i !== self && other.type === type),
    );
    if (missing.length > 0) {
      keys.push(keyOf(node));
      lacking.push(`${keyOf(node)} requires ${missing.join(', ')}`);
    }
  });
  if (lacking.length > 0) {
    throw new BerthError(
      'failed-precondition',
      PluginErrorCode.Unsatisfied,
      `unsatisfied plugin dependencies (no registered plugin provides the type): ${lacking.join('; ')}`,
      { context: { plugins: keys.join(', ') } },
    );
  }
}

/**
 * Called when no unplaced node is free: every unplaced node then has an
 * unplaced dependency, so walking "first unplaced dependency" from any of
 * them must come back to a node already on the walk. That loop is the cycle.
 */
function cycleError(nodes: readonly GraphNode[], deps: readonly number[][], placed: readonly boolean[]): BerthError {
  const walk: number[] = [];
  const position = new Map<number, number>();
  let at = placed.indexOf(false);
  while (!position.has(at)) {
    position.set(at, walk.length);
    walk.push(at);
    at = deps[at]!.find((d) => !placed[d])!;
  }
  const loop = [...walk.slice(position.get(at)), at].map((i) => keyOf(nodes[i]!));
  const path = loop.join(' -> ');
  return new BerthError('failed-precondition', PluginErrorCode.Cycle, `plugin dependency cycle: ${path}`, {
    context: { cycle: path },
  });
}
