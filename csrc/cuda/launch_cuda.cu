// Host launchers of every kernel in csrc/cuda/kernels: a table from (name, dtype, tag) to a typed launch of
// the instantiation, built once. Each argument is checked against the parameter type it fills (integer,
// real, or a device pointer of the right element type on the current device) before the launch.
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../common/activations.h"
#include "../common/losses.h"
#include "cuda_check.cuh"
#include "kernels/all.cuh"

namespace pyhessk {
namespace cuda {
namespace {

using Args = std::vector<KernelArg>;
using Launcher = void (*)(const void* kernel, dim3, dim3, cudaStream_t, const Args&);

template <typename E>
constexpr Elem elem_of() {
  if constexpr (std::is_same_v<E, float>) return Elem::f32;
  else if constexpr (std::is_same_v<E, double>) return Elem::f64;
  else return Elem::i64;
}

template <typename P>
P arg_as(const KernelArg& a, int pos) {
  if constexpr (std::is_pointer_v<P>) {
    using E = std::remove_cv_t<std::remove_pointer_t<P>>;
    if (a.kind != KernelArg::Kind::pointer)
      throw std::invalid_argument("kernel argument " + std::to_string(pos) + " must be a device array or None");
    if (a.p && a.elem != elem_of<E>())
      throw std::invalid_argument("kernel argument " + std::to_string(pos) + " has the wrong element type");
    if (a.p && pointer_device(a.p) != current_device())
      throw std::invalid_argument("kernel argument " + std::to_string(pos) + " lives on another device");
    return static_cast<P>(a.p);
  } else if constexpr (std::is_floating_point_v<P>) {
    if (a.kind != KernelArg::Kind::real && a.kind != KernelArg::Kind::integer)
      throw std::invalid_argument("kernel argument " + std::to_string(pos) + " must be a real scalar");
    return a.kind == KernelArg::Kind::real ? P(a.s) : P(a.i);
  } else {
    if (a.kind != KernelArg::Kind::integer)
      throw std::invalid_argument("kernel argument " + std::to_string(pos) + " must be an integer");
    if constexpr (std::is_same_v<P, unsigned long long>) return a.u;
    else return P(a.i);
  }
}

template <typename... P, size_t... I>
void launch_typed(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, const Args& args,
                  std::index_sequence<I...>) {
  auto typed = std::make_tuple(arg_as<P>(args[I], int(I))...);  // every check before the launch
  kernel<<<grid, block, 0, stream>>>(std::get<I>(typed)...);
  PYHESSK_KERNEL_LAUNCH_CHECK(stream);
}

template <typename... P>
void launch_erased(const void* kernel, dim3 grid, dim3 block, cudaStream_t stream, const Args& args) {
  if (args.size() != sizeof...(P))
    throw std::invalid_argument("the kernel takes " + std::to_string(sizeof...(P)) + " arguments, got " +
                                std::to_string(args.size()));
  launch_typed(reinterpret_cast<void (*)(P...)>(const_cast<void*>(kernel)), grid, block, stream, args,
               std::index_sequence_for<P...>{});
}

struct Entry {
  const void* kernel;
  Launcher launcher;
  bool per_item;  // one block of kReduceThreads per item (the registry's per_item kernels)
};
using Key = std::tuple<std::string, int, int>;
using Table = std::map<Key, Entry>;

template <typename... P>
void add(Table& t, const char* name, int dtype, int tag, void (*kernel)(P...), bool per_item = false) {
  t[Key(name, dtype, tag)] = Entry{reinterpret_cast<const void*>(kernel), &launch_erased<P...>, per_item};
}

template <typename T, int... A>
void add_activations(Table& t, int dt, std::integer_sequence<int, A...>) {
  (add(t, "activation_kernel", dt, A, &activation_kernel<T, A>), ...);
  (add(t, "activation_value_kernel", dt, A, &activation_value_kernel<T, A>), ...);
}

template <typename T, int... L>
void add_losses(Table& t, int dt, std::integer_sequence<int, L...>) {
  (add(t, "loss_head_kernel", dt, L, &loss_head_kernel<T, L>), ...);
  (add(t, "output_hessian_kernel", dt, L, &output_hessian_kernel<T, L>), ...);
  (add(t, "output_factor_kernel", dt, L, &output_factor_kernel<T, L>), ...);
}

template <typename T>
void add_dtype(Table& t, int dt) {
  add_activations<T>(t, dt, std::make_integer_sequence<int, kNumActivations>{});
  add_losses<T>(t, dt, std::make_integer_sequence<int, kNumLosses>{});
  add(t, "add_bias_kernel", dt, -1, &add_bias_kernel<T>);
  add(t, "rforward_kernel", dt, -1, &rforward_kernel<T>);
  add(t, "rbackward_kernel", dt, -1, &rbackward_kernel<T>);
  add(t, "scale_rows_kernel", dt, -1, &scale_rows_kernel<T>);
  add(t, "hadamard_kernel", dt, -1, &hadamard_kernel<T>);
  add(t, "axpy_kernel", dt, -1, &axpy_kernel<T>);
  add(t, "add_scalar_kernel", dt, -1, &add_scalar_kernel<T>);
  add(t, "square_kernel", dt, -1, &square_kernel<T>);
  add(t, "pack_rows_kernel", dt, -1, &pack_rows_kernel<T>);
  add(t, "pack_cols_kernel", dt, -1, &pack_cols_kernel<T>);
  add(t, "assemble_kernel", dt, -1, &assemble_kernel<T>);
  add(t, "column_partials_kernel", dt, -1, &column_partials_kernel<T>, true);
  add(t, "column_finish_kernel", dt, -1, &column_finish_kernel<T>, true);
  add(t, "row_sums_kernel", dt, -1, &row_sums_kernel<T>, true);
  add(t, "scale_sensitivity_kernel", dt, -1, &scale_sensitivity_kernel<T>);
  add(t, "column_norm_kernel", dt, -1, &column_norm_kernel<T>);
  add(t, "transpose_kernel", dt, -1, &transpose_kernel<T>);
  add(t, "gather_kernel", dt, -1, &gather_kernel<T>);
  add(t, "contract_kernel", dt, -1, &contract_kernel<T>);
  add(t, "scatter_columns_kernel", dt, -1, &scatter_columns_kernel<T>);
  add(t, "entries_kernel", dt, -1, &entries_kernel<T>, true);
  add(t, "sample_kernel", dt, -1, &sample_kernel<T>, true);
}

const Table& table() {
  static const Table t = [] {
    Table out;
    add_dtype<float>(out, 0);
    add_dtype<double>(out, 1);
    return out;
  }();
  return t;
}

}  // namespace

void launch(const std::string& name, int dtype, int tag, long long blocks, int threads, void* stream,
            const std::vector<KernelArg>& args) {
  const auto it = table().find(Key(name, dtype, tag));
  if (it == table().end())
    throw std::invalid_argument("no kernel " + name + " for dtype " + std::to_string(dtype) + " and tag " +
                                std::to_string(tag));
  if (blocks < 1 || blocks > 2147483647LL || threads < 1 || threads > 1024)
    throw std::invalid_argument("launch shape out of range: " + std::to_string(blocks) + " blocks of " +
                                std::to_string(threads) + " threads");
  if (it->second.per_item && threads != kReduceThreads)
    throw std::invalid_argument("per-item kernels (" + name + ") need blocks of kReduceThreads threads");
  it->second.launcher(it->second.kernel, dim3(unsigned(blocks)), dim3(unsigned(threads)),
                      static_cast<cudaStream_t>(stream), args);
}

std::vector<std::string> kernel_names() {
  std::vector<std::string> names;
  for (const auto& kv : table())
    if (names.empty() || names.back() != std::get<0>(kv.first)) names.push_back(std::get<0>(kv.first));
  return names;
}

int pointer_device(const void* p) {
  cudaPointerAttributes attr{};
  PYHESSK_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    throw std::invalid_argument("a kernel argument is not device memory");
  return attr.device;
}

int current_device() {
  int d = 0;
  PYHESSK_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

}  // namespace cuda
}  // namespace pyhessk
