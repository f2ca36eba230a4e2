export * from './engine.js';
export * from './plan.js';
export * from './marshal.js';
export * from './cache-pool.js';
export {
  loadBinding, ADDON_PATH, BUILT_ADDON_PATH, EMULATOR_ADDON_PATH, PREBUILT_ADDON_PATH,
  type AttentionProbeSequence, type DeviceInfo, type KernelProbes, type NativeBinding, type NativeConfig, type NativeModel, type NativePass,
  type NativeForwardResult, type NativePassStep, type NativeRouteRequest, type Schedule,
} from './binding.js';
