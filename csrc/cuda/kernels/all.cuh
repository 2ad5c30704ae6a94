// Every pyhessk CUDA kernel: the single source NVRTC compiles for the CuPy path (pyhessk/backends/cuda) and
// that the nvcc-built module pyhessk._core_cuda instantiates.
#pragma once
#include "epilogues.cuh"
#include "gnh.cuh"
#include "loss_heads.cuh"
