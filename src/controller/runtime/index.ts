// The controller runtime: informers, work queues, controllers, leader election and a manager
// tying them together, shaped like client-go and controller-runtime.
export * from './backoff.ts';
export * from '../../core/kube/client.ts';
export * from './controller.ts';
export * from './informer.ts';
export * from './leader-election.ts';
export * from './log.ts';
export * from './manager.ts';
export * from './own-writes.ts';
export * from '../../core/metrics.ts';
export * from '../../core/kube/objects.ts';
export * from './workqueue.ts';
