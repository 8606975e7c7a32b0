// The e2e tests' app: a tiny HTTP server that answers with its version, so traffic through a
// Service shows which revision served it. It counts its answers by status code for Prometheus
// (/metrics) and as JSON (/stats, for web-provider metrics).
//   VERSION       what GET / answers (default: the image's /app/VERSION file, else "v1")
//   ERROR_EVERY   answer 500 to every Nth request to / (0: never), for analysis that must fail
//   PORT          default 8080
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const fromImage = (() => {
  try {
    return readFileSync(new URL('VERSION', import.meta.url), 'utf8').trim();
  } catch {
    return undefined;
  }
})();
const version = process.env.VERSION ?? fromImage ?? 'v1';
const errorEvery = Number(process.env.ERROR_EVERY ?? 0);
const counts = { 200: 0, 500: 0 };
let served = 0;

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200).end('ok\n');
    return;
  }
  if (req.url === '/stats') {
    const total = counts[200] + counts[500];
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        version,
        served: total,
        errors: counts[500],
        errorRate: total ? counts[500] / total : 0,
      }),
    );
    return;
  }
  if (req.url === '/metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(
      [
        '# HELP http_requests_total Requests to / by status code.',
        '# TYPE http_requests_total counter',
        ...Object.entries(counts).map(
          ([code, n]) => `http_requests_total{code="${code}",version="${version}"} ${n}`,
        ),
        '',
      ].join('\n'),
    );
    return;
  }
  served++;
  const code = errorEvery > 0 && served % errorEvery === 0 ? 500 : 200;
  counts[code]++;
  res.writeHead(code, { 'content-type': 'text/plain', connection: 'close' }).end(`${version}\n`);
});

// PID 1 in its container: without handlers SIGTERM would be ignored and every stop would wait
// out the grace period. It keeps serving for a second first, as a well-behaved server does: the
// endpoint's removal reaches kube-proxy only after the pod was told to stop.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => setTimeout(() => server.close(() => process.exit(0)), 1000));
}
server.listen(Number(process.env.PORT ?? 8080), () => console.log(`serving ${version}`));
