// Node entry: the server behind `fast-dllm web`. The page itself is built into dist/site/ (scripts/bundle.mjs).
export { startWebServer, defaultSiteDir, parseRange, safeJoin, DEFAULT_PORT, type WebServer, type WebServerOptions } from './server/serve.js';
