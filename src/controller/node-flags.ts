// How the controller's process runs: the image's entrypoint puts the flags on node's command
// line (V8 takes --optimize-for-size there, not from NODE_OPTIONS) and its config sets the
// environment; the benches and the demo start the controller with both, so what they measure is
// what ships.
//
// --optimize-for-size: V8 grows the heap more slowly between full collections. A cold sync of
// 1,000 applications allocates fast and keeps little (about 50 MiB live after it), and by
// default V8 let the heap reach 300 MiB of mostly garbage first: peak RSS 395 MiB with the
// default, 152 MiB with this flag, in the same time (bench/sync.ts section 3, bench/README.md).
export const CONTROLLER_NODE_FLAGS: readonly string[] = ['--optimize-for-size'];

// MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (V8's GC and compiler workers,
// libuv's pool) a malloc arena of its own, and each keeps what it once held. Two arenas cost
// nothing measurable in time here and 5-9 MiB of peak RSS less (200 concurrent canaries,
// bench/peers.ts section 2; bench/README.md), as Go's runtime or jemalloc-based images avoid.
export const CONTROLLER_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
