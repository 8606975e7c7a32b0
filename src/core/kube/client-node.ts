// The parts of @kubernetes/client-node we use, imported from the files that define them rather
// than from the package's index. The index evaluates every generated API and model class (and
// their dependencies) when it is imported, whether or not anything uses them: about 10 MB of a
// long-running controller's memory. These files are the package's own (it declares no `exports`
// map, so they are public paths); scripts/build.mjs marks its generated code free of side
// effects so that what they do not use is left out of the bundle.
export { KubeConfig, type ApiConstructor, type ApiType } from '@kubernetes/client-node/dist/config.js';
export {
  IsomorphicFetchHttpLibrary,
  RequestContext,
  ResponseContext,
  type HttpLibrary,
} from '@kubernetes/client-node/dist/gen/http/http.js';
export { ApiException } from '@kubernetes/client-node/dist/gen/apis/exception.js';
export { createConfiguration } from '@kubernetes/client-node/dist/gen/configuration.js';
export { ServerConfiguration } from '@kubernetes/client-node/dist/gen/servers.js';
export { Observable } from '@kubernetes/client-node/dist/gen/rxjsStub.js';
