export { main, buildProgram } from './main.js';
export type { Io } from './io.js';
export { UsageError, RunError, EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED } from './errors.js';
export { pull, listFiles, defaultCacheDir, wantedFile } from './pull.js';
export type { PullOptions, RemoteFile } from './pull.js';
export { inspectModel, formatInspection, readSafetensorsHeader } from './inspect.js';
export type { Inspection } from './inspect.js';
export { openEngine, ENGINE_CHOICES } from './engines.js';
export { FLAG_NAMES, addDecodeOptions, choicesOf as flagChoices, decodingFrom, type DecodeFlags } from './decode.js';
