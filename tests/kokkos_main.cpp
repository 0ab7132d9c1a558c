// Catch2 main for tests that run Kokkos kernels: Kokkos lives for the whole
// test session (it can be initialised only once per process).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  return Catch::Session().run(argc, argv);
}
