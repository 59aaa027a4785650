import { z } from 'zod';

const handlerSchema = z
  .object({
    binary: z.string().min(1).default('runc').describe('The OCI runtime binary (runc or a runc-compatible one): a path or a name looked up in PATH.'),
    root: z
      .string()
      .default('')
      .describe('The runtime\'s state directory (runc --root). Empty: <plugin state dir>/<handler name>.'),
    base_spec: z
      .string()
      .default('')
      .describe(
        'A JSON OCI runtime spec file that this handler\'s container specs start from (fields the generated spec leaves out come ' +
          'from it; mounts, env, rlimits and devices are merged by key). Read once at start-up; an unreadable or invalid file ' +
          'fails the plugin. Empty: none.',
      ),
    options: z
      .record(z.string(), z.unknown())
      .default({})
      .describe('Free-form options of this handler, shown in Status.'),
  })
  .describe('One runtime handler (a CRI runtime_handler / RuntimeClass handler name).');

export type RuntimeHandlerConfig = z.infer<typeof handlerSchema>;

export const runtimeConfigSchema = z.object({
  default_runtime: z
    .string()
    .default('runc')
    .describe('The handler used when a pod names none (runtime_handler "").'),
  monitor_binary: z
    .string()
    .min(1)
    .default('conmon')
    .describe('The per-container monitor (conmon): a path or a name looked up in PATH.'),
  runtimes: z
    .record(z.string(), handlerSchema)
    .default({ runc: { binary: 'runc', root: '', base_spec: '', options: {} } })
    .describe('Runtime handlers by name (lowercase DNS label, as Kubernetes RuntimeClass handlers).'),
});

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;
