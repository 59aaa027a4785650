import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BerthError } from '../../src/core/errors.js';
import { orderRegistrations, PluginErrorCode, PluginType, type GraphNode } from '../../src/core/plugin/index.js';

function node(type: PluginType, id: string, ...requires: PluginType[]): GraphNode {
  return { type, id, requires };
}

function keys(nodes: readonly GraphNode[]): string[] {
  return nodes.map((n) => `${n.type}.${n.id}`);
}

function graphError(nodes: GraphNode[], code: string): BerthError {
  let caught: unknown;
  try {
    orderRegistrations(nodes);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BerthError, `expected a BerthError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  return caught;
}

describe('orderRegistrations', () => {
  it('puts dependencies before the plugins that require them', () => {
    const ordered = orderRegistrations([
      node(PluginType.CRI, 'service', PluginType.Runtime, PluginType.Network),
      node(PluginType.Runtime, 'oci'),
      node(PluginType.Network, 'cni'),
    ]);
    assert.deepEqual(keys(ordered), ['runtime.oci', 'network.cni', 'cri.service']);
  });

  it('waits for every plugin of a required type', () => {
    const ordered = orderRegistrations([
      node(PluginType.Images, 'store', PluginType.Snapshotter),
      node(PluginType.Snapshotter, 'overlayfs'),
      node(PluginType.Content, 'local'),
      node(PluginType.Snapshotter, 'native'),
    ]);
    assert.deepEqual(keys(ordered), ['snapshotter.overlayfs', 'content.local', 'snapshotter.native', 'images.store']);
  });

  it('keeps registration order among independent plugins', () => {
    const independent = [
      node(PluginType.GC, 'scheduler'),
      node(PluginType.Content, 'local'),
      node(PluginType.Events, 'exchange'),
      node(PluginType.Diff, 'walking'),
    ];
    assert.deepEqual(keys(orderRegistrations(independent)), keys(independent));

    const ordered = orderRegistrations([
      node(PluginType.Content, 'local'),
      node(PluginType.Metadata, 'sqlite', PluginType.Content),
      node(PluginType.Snapshotter, 'overlayfs'),
      node(PluginType.Images, 'store', PluginType.Metadata, PluginType.Snapshotter),
      node(PluginType.Events, 'exchange'),
    ]);
    assert.deepEqual(keys(ordered), [
      'content.local',
      'metadata.sqlite',
      'snapshotter.overlayfs',
      'images.store',
      'events.exchange',
    ]);
  });

  it('does not reorder its input array', () => {
    const input = [node(PluginType.CRI, 'service', PluginType.Runtime), node(PluginType.Runtime, 'oci')];
    orderRegistrations(input);
    assert.deepEqual(keys(input), ['cri.service', 'runtime.oci']);
  });

  it('lets a plugin require other plugins of its own type', () => {
    const ordered = orderRegistrations([
      node(PluginType.Snapshotter, 'wrapper', PluginType.Snapshotter),
      node(PluginType.Snapshotter, 'overlayfs'),
    ]);
    assert.deepEqual(keys(ordered), ['snapshotter.overlayfs', 'snapshotter.wrapper']);
  });

  it('reports a cycle with its path', () => {
    const err = graphError(
      [node(PluginType.CRI, 'service', PluginType.Runtime), node(PluginType.Runtime, 'oci', PluginType.CRI)],
      PluginErrorCode.Cycle,
    );
    assert.equal(err.kind, 'failed-precondition');
    assert.equal(err.message, 'plugin dependency cycle: cri.service -> runtime.oci -> cri.service');
  });

  it('reports only the loop when the cycle sits behind other plugins', () => {
    const err = graphError(
      [
        node(PluginType.GRPC, 'server', PluginType.CRI),
        node(PluginType.CRI, 'service', PluginType.Images),
        node(PluginType.Content, 'local'),
        node(PluginType.Images, 'store', PluginType.Content, PluginType.Metadata),
        node(PluginType.Metadata, 'sqlite', PluginType.GC),
        node(PluginType.GC, 'scheduler', PluginType.Images),
      ],
      PluginErrorCode.Cycle,
    );
    assert.equal(err.message, 'plugin dependency cycle: images.store -> metadata.sqlite -> gc.scheduler -> images.store');
  });

  it('reports two plugins of one type requiring each other as a cycle', () => {
    const err = graphError(
      [
        node(PluginType.Snapshotter, 'a', PluginType.Snapshotter),
        node(PluginType.Snapshotter, 'b', PluginType.Snapshotter),
      ],
      PluginErrorCode.Cycle,
    );
    assert.equal(err.message, 'plugin dependency cycle: snapshotter.a -> snapshotter.b -> snapshotter.a');
  });

  it('lists every unsatisfied plugin and what it lacks', () => {
    const err = graphError(
      [
        node(PluginType.CRI, 'service', PluginType.Runtime, PluginType.Network, PluginType.Streaming),
        node(PluginType.Runtime, 'oci'),
        node(PluginType.GC, 'scheduler', PluginType.Metadata),
        node(PluginType.Snapshotter, 'wrapper', PluginType.Snapshotter),
      ],
      PluginErrorCode.Unsatisfied,
    );
    assert.equal(err.kind, 'failed-precondition');
    assert.match(err.message, /cri\.service requires network, streaming; gc\.scheduler requires metadata; snapshotter\.wrapper requires snapshotter$/);
    assert.equal(err.context['plugins'], 'cri.service, gc.scheduler, snapshotter.wrapper');
  });

  it('rejects a key registered twice', () => {
    const err = graphError(
      [node(PluginType.Content, 'local'), node(PluginType.Metadata, 'sqlite'), node(PluginType.Content, 'local')],
      PluginErrorCode.Duplicate,
    );
    assert.match(err.message, /content\.local/);
    assert.doesNotMatch(err.message, /metadata/);
  });
});
