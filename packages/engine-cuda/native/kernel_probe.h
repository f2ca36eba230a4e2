// The addon's `kernels` object: single-kernel entry points for tests (kernel_probe.cc).
#pragma once
#include <napi.h>

Napi::Object KernelProbes(Napi::Env env);
