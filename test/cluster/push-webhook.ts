// A GitHub push webhook as GitHub sends it (the fields the controller reads: ref, the repository's
// clone URL and default branch), signed with X-Hub-Signature-256 when a secret is given, with a
// fresh X-GitHub-Delivery id each time. For the tests and the demo.
import { randomBytes } from 'node:crypto';
import { signature } from '../../src/controller/sync/webhook.ts';

export function pushWebhook(options: { repoURL: string; secret?: string; branch?: string }): {
  body: string;
  headers: Record<string, string>;
} {
  const body = JSON.stringify({
    ref: `refs/heads/${options.branch ?? 'main'}`,
    after: randomBytes(20).toString('hex'),
    repository: { clone_url: options.repoURL, default_branch: 'main' },
  });
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-github-event': 'push',
    'x-github-delivery': randomBytes(8).toString('hex'),
  };
  if (options.secret) headers['x-hub-signature-256'] = signature(options.secret, Buffer.from(body));
  return { body, headers };
}
