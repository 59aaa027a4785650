import { z } from 'zod';
import { formatPlatform, hostPlatform } from '../remotes/index.js';

const authSchema = z
  .object({
    username: z.string().optional().describe('User name.'),
    password: z.string().optional().describe('Password.'),
    auth: z.string().optional().describe('base64 of "username:password", as in a Docker config.json.'),
    identity_token: z.string().optional().describe('Refresh token for the registry\'s OAuth2 token endpoint.'),
  })
  .describe('Credentials for one registry host.');

export const imagesConfigSchema = z.object({
  registry_config_dir: z
    .string()
    .default('')
    .describe(
      'Directory of registry host configs in containerd\'s layout: <dir>/<host[:port]>/hosts.toml (mirrors, ca, ' +
        'client certs, skip_verify, headers) and <dir>/_default/hosts.toml. Read on every pull. Empty: none.',
    ),
  max_concurrent_downloads: z
    .number()
    .int()
    .min(1)
    .default(3)
    .describe('Layers of one image downloaded at the same time.'),
  platform: z
    .string()
    .default(formatPlatform(hostPlatform()))
    .describe('Platform (os/arch[/variant]) whose manifest is pulled from a multi-platform image.'),
  pinned_images: z
    .array(z.string())
    .default([])
    .describe('Image references reported as pinned (kubelet never garbage-collects them), e.g. the sandbox image.'),
  pull_progress_timeout_seconds: z
    .number()
    .min(0)
    .default(300)
    .describe('A pull fails when its downloads move no bytes for this many seconds; 0 disables the check.'),
  auths: z
    .record(z.string(), authSchema)
    .default({})
    .describe('Credentials by registry host (as in image references, e.g. "registry.example.com:5000"), used when a pull brings none.'),
});

export type ImagesConfig = z.infer<typeof imagesConfigSchema>;
