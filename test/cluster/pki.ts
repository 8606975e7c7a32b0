// The test control plane's PKI: one CA that signs the apiserver's serving certificate and the
// components' client certificates, plus a separate key pair that signs service-account tokens.
// Real TLS and real client-certificate authentication, so RBAC is exercised as on a real cluster.
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ClientIdentity {
  /** Certificate common name: the Kubernetes user name. */
  user: string;
  /** Certificate organisations: the Kubernetes groups. */
  groups: string[];
}

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
  /** Client certificate and key paths by file stem (see createPki's `clients`). */
  clients: Record<string, { cert: string; key: string }>;
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args);
}

async function newKey(path: string): Promise<void> {
  // P-256 keys: generated in milliseconds, accepted by Go's TLS stack and for ES256 token signing.
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

/**
 * A key and a certificate signed by the CA, written to `<pki.dir>/<stem>.*`. Each certificate has
 * a serial file of its own (openssl picks a random first serial), so concurrent signings by one
 * CA never collide on a shared ca.srl.
 */
export async function signedCert(
  pki: { dir: string; caCert: string; caKey: string },
  stem: string,
  subject: string,
  extensions: string,
): Promise<{ cert: string; key: string }> {
  const key = join(pki.dir, `${stem}.key`);
  const csr = join(pki.dir, `${stem}.csr`);
  const cert = join(pki.dir, `${stem}.crt`);
  const ext = join(pki.dir, `${stem}.ext`);
  await newKey(key);
  await openssl(['req', '-new', '-key', key, '-subj', subject, '-out', csr]);
  await writeFile(ext, extensions);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    pki.caCert,
    '-CAkey',
    pki.caKey,
    '-CAcreateserial',
    '-CAserial',
    join(pki.dir, `${stem}.srl`),
    '-days',
    '3650',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    cert,
  ]);
  return { cert, key };
}

/** Extensions of a TLS client certificate. */
export const CLIENT_CERT_EXTENSIONS =
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';

/** Escapes a value for an openssl `-subj` string (`/`, `,`, `+`, `=` are special). */
function subjectValue(value: string): string {
  return value.replace(/[/\\,+=]/g, (c) => `\\${c}`);
}

export async function createPki(
  dir: string,
  serverSans: string[],
  clients: Record<string, ClientIdentity>,
): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  await newKey(caKey);
  await openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    caKey,
    '-subj',
    '/CN=kube-actions-test-ca',
    '-days',
    '3650',
    '-sha256',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    '-out',
    caCert,
  ]);
  const ca = { dir, caCert, caKey };

  const server = await signedCert(
    ca,
    'apiserver',
    '/CN=kube-apiserver',
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${serverSans.join(',')}`,
      '',
    ].join('\n'),
  );

  const clientCerts: Pki['clients'] = {};
  for (const [stem, identity] of Object.entries(clients)) {
    const subject =
      identity.groups.map((g) => `/O=${subjectValue(g)}`).join('') + `/CN=${subjectValue(identity.user)}`;
    clientCerts[stem] = await signedCert(ca, stem, subject, CLIENT_CERT_EXTENSIONS);
  }

  const serviceAccountKey = join(dir, 'sa.key');
  const serviceAccountPub = join(dir, 'sa.pub');
  await newKey(serviceAccountKey);
  await openssl(['pkey', '-in', serviceAccountKey, '-pubout', '-out', serviceAccountPub]);

  return {
    dir,
    caCert,
    serverCert: server.cert,
    serverKey: server.key,
    serviceAccountKey,
    serviceAccountPub,
    clients: clientCerts,
  };
}
