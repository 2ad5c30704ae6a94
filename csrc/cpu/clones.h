// Function multiversioning for the CPU engine's elementwise sweeps: each marked function is compiled for
// x86-64-v3 (AVX2, FMA) and for the baseline, and the loader picks the clone the CPU supports.
// -DPYHESSK_CPU_NO_CLONES compiles each function once, for the -march given (tests/test_cpu_isa.py
// builds both instruction sets this way, since the loader would only ever run one of them here).
#pragma once

#if !defined(PYHESSK_CPU_NO_CLONES) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && defined(__linux__)
#define PYHESSK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PYHESSK_CPU_CLONES
#endif
