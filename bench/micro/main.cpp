// Entry point of the micro-benchmark runner: every bench_*.cpp registers with Google Benchmark.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
