import { z } from 'zod';

/** `[plugins."cri.service"]`. */
export const criConfigSchema = z.object({
  sandbox_image: z
    .string()
    .min(1)
    .default('registry.k8s.io/pause:3.10')
    .describe('Image of every pod\'s sandbox (pause) container; pulled when a pod needs it and missing, and pinned so image GC and RemoveImage of other names keep it.'),
});

export type CriConfig = z.infer<typeof criConfigSchema>;
