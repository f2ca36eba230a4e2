// native/kernels.cu compiled by the host C++ compiler against the emulator (the extension .cu means nothing to g++).
#include "../kernels.cu"
