/**
 * Runs a CNI network list for ADD, CHECK and DEL as the CNI spec's execution
 * protocol says: each plugin binary (found in the bin dirs, first match) is
 * exec'd with the CNI_* environment and its execution config on stdin: the
 * plugin's config with the list's `name` and `cniVersion`, `runtimeConfig`
 * from the capability args it declares, `capabilities` removed, and
 * `prevResult` (on ADD the previous plugin's result; on CHECK and DEL the
 * cached result of the list's ADD). ADD and CHECK run the plugins in order,
 * DEL in reverse; the first failure stops the list.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage, type ErrorContext, type ErrorKind } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { CniNetwork, CniPluginConf } from './conf-loader.js';
import { cniVersionAtLeast } from './version.js';

export type CniCommand = 'ADD' | 'CHECK' | 'DEL';

/** Per-attachment parameters: the same for ADD and its CHECKs and DEL. */
export interface CniRuntimeConf {
  /** CNI_CONTAINERID: the sandbox id. */
  containerId: string;
  /** CNI_NETNS: path of the network namespace; may be empty on DEL when it is gone. */
  netns: string;
  /** CNI_IFNAME: interface to create inside the namespace (e.g. eth0, lo). */
  ifName: string;
  /** CNI_ARGS pairs, joined as `K=V;K=V` (e.g. IgnoreUnknown, K8S_POD_NAME). */
  args?: Readonly<Record<string, string>>;
  /**
   * Dynamic values keyed by capability name (`portMappings`, `bandwidth`,
   * `ipRanges`, `dns`, ...). A plugin gets in its `runtimeConfig` only those
   * whose capability its config declares.
   */
  capabilityArgs?: Readonly<Record<string, unknown>>;
}

export interface CniExecOptions {
  /** Dirs searched for plugin binaries, in order; also CNI_PATH. */
  binDirs: readonly string[];
  /** Limit for each plugin exec, in ms. */
  timeoutMs?: number;
  /** Aborts the running plugin (SIGKILL) and the rest of the list. */
  signal?: AbortSignal;
  log?: Logger;
}

export const DEFAULT_PLUGIN_TIMEOUT_MS = 60_000;

/** A CNI result (spec ≥ 0.3.0 shape; older versions report `ip4`/`ip6` instead of `ips`). */
export interface CniResult {
  cniVersion?: string;
  interfaces?: Array<{ name: string; mac?: string; mtu?: number; sandbox?: string; [key: string]: unknown }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number; version?: string; [key: string]: unknown }>;
  routes?: Array<{ dst: string; gw?: string; [key: string]: unknown }>;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [key: string]: unknown;
}

/** Largest stdout accepted from a plugin; results are small. */
const MAX_STDOUT_BYTES = 4 * 1024 * 1024;
/** Stderr kept for error messages. */
const MAX_STDERR_BYTES = 16 * 1024;

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** CNI error codes a caller may retry (try again later; plugin not available). */
const RETRYABLE_CNI_CODES = new Set([11, 50, 51]);

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidRuntime(message: string, context: ErrorContext): never {
  throw new BerthError('invalid-argument', 'ERR_CNI_INVALID_RUNTIME_CONF', message, { context });
}

function validateRuntime(command: CniCommand, network: CniNetwork, rt: CniRuntimeConf): void {
  const context = { network: network.name, containerId: rt.containerId, command };
  if (!CONTAINER_ID.test(rt.containerId)) {
    invalidRuntime(`invalid container id ${JSON.stringify(rt.containerId)} for CNI ${command}`, context);
  }
  const ifName = rt.ifName;
  if (ifName === '' || ifName.length > 15 || ifName === '.' || ifName === '..' || /[/:\s]/.test(ifName)) {
    invalidRuntime(`invalid interface name ${JSON.stringify(ifName)} for CNI ${command}`, context);
  }
  if (command !== 'DEL' && rt.netns === '') invalidRuntime(`CNI ${command} needs a network namespace path`, context);
  for (const [key, value] of Object.entries(rt.args ?? {})) {
    if (key === '' || /[=;]/.test(key) || value.includes(';')) {
      invalidRuntime(`invalid CNI_ARGS pair ${JSON.stringify(`${key}=${value}`)}`, context);
    }
  }
}

/** `K=V;K=V` for CNI_ARGS. */
export function formatCniArgs(args: Readonly<Record<string, string>> | undefined): string {
  return Object.entries(args ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

/**
 * The JSON a plugin reads on stdin: its config with the list's name and
 * version, `runtimeConfig` from the declared capabilities (only when one
 * applies), `prevResult` when given, and no `capabilities`.
 */
export function buildExecConfig(
  network: CniNetwork,
  plugin: CniPluginConf,
  prevResult: CniResult | undefined,
  capabilityArgs: Readonly<Record<string, unknown>> | undefined,
): JsonObject {
  const { capabilities: _declared, ...conf } = plugin.conf;
  const out: JsonObject = { ...conf, name: network.name, cniVersion: network.cniVersion };
  const runtimeConfig: JsonObject = {};
  for (const capability of plugin.capabilities) {
    const value = capabilityArgs?.[capability];
    if (value !== undefined && Object.hasOwn(capabilityArgs ?? {}, capability)) runtimeConfig[capability] = value;
  }
  if (Object.keys(runtimeConfig).length > 0) out['runtimeConfig'] = runtimeConfig;
  if (prevResult !== undefined) out['prevResult'] = prevResult;
  return out;
}

/** The first executable regular file named `type` in the bin dirs. */
export async function findPlugin(type: string, binDirs: readonly string[]): Promise<string | undefined> {
  if (type === '' || type.includes('/') || type === '.' || type === '..') return undefined;
  for (const dir of binDirs) {
    const candidate = path.join(dir, type);
    try {
      if (!(await stat(candidate)).isFile()) continue;
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Missing or not executable here: try the next dir.
    }
  }
  return undefined;
}

interface ExecOutcome {
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  stdoutOverflow: boolean;
}

/** Exec one plugin binary; rejects on spawn failure or abort (the child is SIGKILLed). */
function execBinary(file: string, env: NodeJS.ProcessEnv, stdin: Buffer, signal: AbortSignal): Promise<ExecOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stdoutOverflow = false;
    const stderr: Buffer[] = [];
    let stderrBytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdoutBytes + chunk.length > MAX_STDOUT_BYTES) {
        stdoutOverflow = true;
        child.kill('SIGKILL');
        return;
      }
      stdout.push(chunk);
      stdoutBytes += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderrBytes >= MAX_STDERR_BYTES) return;
      const part = chunk.subarray(0, MAX_STDERR_BYTES - stderrBytes);
      stderr.push(part);
      stderrBytes += part.length;
    });
    // A plugin may exit without reading its config: ignore EPIPE on stdin.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    child.once('error', reject);
    child.once('close', (exitCode, exitSignal) =>
      resolve({
        exitCode,
        exitSignal,
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr).toString('utf8').trim(),
        stdoutOverflow,
      }),
    );
  });
}

interface PluginCall {
  command: CniCommand;
  network: CniNetwork;
  plugin: CniPluginConf;
  rt: CniRuntimeConf;
  prevResult: CniResult | undefined;
  opts: CniExecOptions;
}

function callContext(call: PluginCall): ErrorContext {
  return {
    plugin: call.plugin.type,
    network: call.network.name,
    containerId: call.rt.containerId,
    ifName: call.rt.ifName,
    command: call.command,
  };
}

function describeCall(call: PluginCall): string {
  return `CNI plugin ${call.plugin.type} ${call.command} on network ${call.network.name} for container ${call.rt.containerId}`;
}

/** The error a failed plugin reports: the spec's `{code, msg, details}` on stdout, else its stderr. */
function pluginFailure(call: PluginCall, out: ExecOutcome): BerthError {
  let reported: JsonObject | undefined;
  try {
    const parsed: unknown = JSON.parse(out.stdout.toString('utf8'));
    if (isObject(parsed) && typeof parsed['code'] === 'number') reported = parsed;
  } catch {
    // Not a CNI error object: fall back to stderr below.
  }
  const exit = out.exitSignal ? `killed by ${out.exitSignal}` : `exit status ${out.exitCode}`;
  const context: ErrorContext = { ...callContext(call), exitCode: out.exitCode ?? undefined };
  if (reported) {
    const code = reported['code'] as number;
    const msg = typeof reported['msg'] === 'string' ? reported['msg'] : '';
    const details = typeof reported['details'] === 'string' ? reported['details'] : '';
    const kind: ErrorKind = RETRYABLE_CNI_CODES.has(code) ? 'unavailable' : 'internal';
    return new BerthError(
      kind,
      'ERR_CNI_PLUGIN_FAILED',
      `${describeCall(call)} failed: ${msg || `error code ${code}`}${details ? `; ${details}` : ''} (code ${code})`,
      { context: { ...context, cniCode: code, cniMsg: msg, cniDetails: details || undefined } },
    );
  }
  const text = out.stderr || out.stdout.toString('utf8').trim();
  return new BerthError('internal', 'ERR_CNI_PLUGIN_FAILED', `${describeCall(call)} failed (${exit})${text ? `: ${text}` : ''}`, {
    context: { ...context, stderr: out.stderr || undefined },
  });
}

/** Run one plugin of a list; returns its parsed stdout for ADD. */
async function runPlugin(call: PluginCall): Promise<CniResult | undefined> {
  const { command, network, plugin, rt, opts } = call;
  const external = opts.signal;
  if (external?.aborted) {
    throw new BerthError('cancelled', 'ERR_CNI_PLUGIN_CANCELLED', `${describeCall(call)} cancelled`, { context: callContext(call) });
  }
  const file = await findPlugin(plugin.type, opts.binDirs);
  if (file === undefined) {
    throw new BerthError(
      'failed-precondition',
      'ERR_CNI_PLUGIN_NOT_FOUND',
      `CNI plugin ${plugin.type} of network ${network.name} not found in ${opts.binDirs.join(', ') || '(no bin dirs)'}`,
      { context: { ...callContext(call), binDirs: opts.binDirs.join(':') } },
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PLUGIN_TIMEOUT_MS;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = external ? AbortSignal.any([external, timeout]) : timeout;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: rt.containerId,
    CNI_NETNS: rt.netns,
    CNI_IFNAME: rt.ifName,
    CNI_ARGS: formatCniArgs(rt.args),
    CNI_PATH: opts.binDirs.join(':'),
  };
  const stdin = Buffer.from(JSON.stringify(buildExecConfig(network, plugin, call.prevResult, rt.capabilityArgs)));
  const started = performance.now();
  let out: ExecOutcome;
  try {
    out = await execBinary(file, env, stdin, signal);
  } catch (err) {
    if (timeout.aborted) {
      throw new BerthError('deadline-exceeded', 'ERR_CNI_PLUGIN_TIMEOUT', `${describeCall(call)} timed out after ${timeoutMs} ms`, {
        context: { ...callContext(call), timeoutMs },
        cause: err,
      });
    }
    if (external?.aborted) {
      throw new BerthError('cancelled', 'ERR_CNI_PLUGIN_CANCELLED', `${describeCall(call)} cancelled`, {
        context: callContext(call),
        cause: err,
      });
    }
    throw new BerthError('internal', 'ERR_CNI_PLUGIN_EXEC', `cannot exec ${file} for ${describeCall(call)}: ${errorMessage(err)}`, {
      context: { ...callContext(call), file },
      cause: err,
    });
  }
  const ms = Math.round(performance.now() - started);
  opts.log?.debug({ plugin: plugin.type, network: network.name, command, containerId: rt.containerId, ms, exitCode: out.exitCode }, 'CNI plugin ran');
  if (out.stdoutOverflow) {
    throw new BerthError('internal', 'ERR_CNI_INVALID_RESULT', `${describeCall(call)} wrote more than ${MAX_STDOUT_BYTES} bytes`, {
      context: callContext(call),
    });
  }
  if (out.exitCode !== 0) throw pluginFailure(call, out);
  if (out.stderr) opts.log?.debug({ plugin: plugin.type, command, stderr: out.stderr }, 'CNI plugin stderr');
  if (command !== 'ADD') return undefined;
  let result: unknown;
  try {
    result = JSON.parse(out.stdout.toString('utf8'));
  } catch (err) {
    throw new BerthError('internal', 'ERR_CNI_INVALID_RESULT', `${describeCall(call)} returned no valid JSON result: ${errorMessage(err)}`, {
      context: callContext(call),
      cause: err,
    });
  }
  if (!isObject(result)) {
    throw new BerthError('internal', 'ERR_CNI_INVALID_RESULT', `${describeCall(call)} returned a result that is not a JSON object`, {
      context: callContext(call),
    });
  }
  return result as CniResult;
}

/**
 * ADD the container to a network: run the plugins in order, each given the
 * previous one's result. Returns the last plugin's result, which the caller
 * must keep (it is the `prevResult` of later CHECKs and of the DEL).
 */
export async function addNetworkList(network: CniNetwork, rt: CniRuntimeConf, opts: CniExecOptions): Promise<CniResult> {
  validateRuntime('ADD', network, rt);
  let prevResult: CniResult | undefined;
  for (const plugin of network.plugins) {
    prevResult = await runPlugin({ command: 'ADD', network, plugin, rt, prevResult, opts });
  }
  if (prevResult === undefined) {
    // The loader never yields an empty list; a hand-built one is a caller bug.
    throw new BerthError('invalid-argument', 'ERR_CNI_EMPTY_NETWORK', `network ${network.name} has no plugins`, {
      context: { network: network.name },
    });
  }
  return prevResult;
}

/**
 * CHECK the container's networking against the result of its ADD. Does
 * nothing when the list sets `disableCheck`; fails for lists older than
 * spec 0.4.0, which have no CHECK.
 */
export async function checkNetworkList(
  network: CniNetwork,
  rt: CniRuntimeConf,
  prevResult: CniResult,
  opts: CniExecOptions,
): Promise<void> {
  validateRuntime('CHECK', network, rt);
  if (network.disableCheck) return;
  if (!cniVersionAtLeast(network.cniVersion, '0.4.0')) {
    throw new BerthError(
      'failed-precondition',
      'ERR_CNI_CHECK_UNSUPPORTED',
      `network ${network.name} uses CNI ${network.cniVersion}, which has no CHECK (needs 0.4.0 or later)`,
      { context: { network: network.name, cniVersion: network.cniVersion } },
    );
  }
  for (const plugin of network.plugins) {
    await runPlugin({ command: 'CHECK', network, plugin, rt, prevResult, opts });
  }
}

/**
 * DEL the container from a network: run the plugins in reverse order. Pass
 * the cached ADD result when there is one (spec 0.4.0 and later receive it as
 * `prevResult`); without it plugins release what they can.
 */
export async function delNetworkList(
  network: CniNetwork,
  rt: CniRuntimeConf,
  prevResult: CniResult | undefined,
  opts: CniExecOptions,
): Promise<void> {
  validateRuntime('DEL', network, rt);
  const cached = cniVersionAtLeast(network.cniVersion, '0.4.0') ? prevResult : undefined;
  for (const plugin of [...network.plugins].reverse()) {
    await runPlugin({ command: 'DEL', network, plugin, rt, prevResult: cached, opts });
  }
}
