// The Node flags the controller runs with: the image's entrypoint puts them on node's command
// line (V8 takes --optimize-for-size there, not from NODE_OPTIONS), and the benches start the
// controller with them, so what they measure is what ships.
//
// --optimize-for-size: V8 grows the heap more slowly between full collections. A cold sync of
// 1,000 applications allocates fast and keeps little (about 50 MiB live after it), and by
// default V8 let the heap reach 300 MiB of mostly garbage first: peak RSS 395 MiB with the
// default, 152 MiB with this flag, in the same time (bench/sync.ts section 3, bench/README.md).
export const CONTROLLER_NODE_FLAGS: readonly string[] = ['--optimize-for-size'];
