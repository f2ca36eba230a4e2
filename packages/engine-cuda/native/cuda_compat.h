// The one place that decides whether the kernels and the addon build against the CUDA toolkit or against the
// CPU emulator (emu/cuda_emu.h, chosen by -DFDL_CUDA_EMULATOR). Kernel launches and dynamic shared memory are
// written through the two macros below so that the same source compiles both ways; asynchronous copies use the
// toolkit's pipeline primitives (cp.async on sm_80+), which the emulator implements.
#pragma once
#ifdef FDL_CUDA_EMULATOR
#include "emu/cuda_emu.h"
// kernel<<<grid, block, shared, stream>>>(args...) on the emulator: blocks in turn, threads as fibers.
#define FDL_LAUNCH(kernel, grid, block, shared, stream) \
  (static_cast<void>(stream), ::fdl_emu::launcher(kernel, dim3(grid), dim3(block), (shared)))
#define FDL_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::fdl_emu::dynamic_shared())
#else
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#ifdef __CUDACC__
#include <mma.h>
#include <cuda_pipeline.h>
#endif
#define FDL_LAUNCH(kernel, grid, block, shared, stream) kernel<<<(grid), (block), (shared), (stream)>>>
#define FDL_DYNAMIC_SHARED(type, name) extern __shared__ __align__(128) type name[]
#endif
