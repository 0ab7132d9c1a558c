// A small Vulkan compute runtime: just what the attention kernels need.
//
//   Context   instance + one device + one compute queue; device choice by
//             RA_VK_DEVICE (index or part of the name) or ContextOptions,
//             else the best device (discrete > integrated > virtual > CPU;
//             NVIDIA first among equals); validation layers with a
//             debug-utils messenger that records every message so tests can
//             fail on them; buffer upload/download through a host-visible
//             staging buffer; a pipeline cache keyed by kernel name and
//             specialization constants; one-shot command submission.
//   Buffer    a device-local storage buffer (RAII).
//
// Every failing Vulkan call throws ra::vk::VulkanError naming the call and
// the VkResult. Written on the C API (vulkan.h): the C++ headers would add
// seconds of compile time per file on a 2-core CI machine for no gain here.
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace ra::vk {

// A Vulkan call failed. what() names the call and the result.
class VulkanError : public std::runtime_error {
 public:
  VulkanError(const std::string& call, VkResult r);
  VkResult result() const { return result_; }

 private:
  VkResult result_;
};

// No usable Vulkan device (no loader, no ICD, no compute queue, or a
// requested device that does not exist).
class NoDeviceError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* result_name(VkResult r);
void check(VkResult r, const char* call);
// RA_VK_CHECK(vkCreateBuffer(...)) throws VulkanError("vkCreateBuffer", r).
#define RA_VK_CHECK(expr) ::ra::vk::check((expr), #expr)

struct ContextOptions {
  // "" = $RA_VK_DEVICE, else automatic. A number selects by enumeration
  // index; anything else is a case-insensitive part of the device name
  // ("llvmpipe" for lavapipe, "nvidia", "h100").
  std::string device;
  // -1 = $RA_VK_VALIDATION (0/1) if set, else on in debug builds (no NDEBUG).
  int validation = -1;
};

struct DeviceInfo {
  std::string name, driver_name, driver_info;
  std::uint32_t vendor_id = 0, device_id = 0, api_version = 0, driver_version = 0;
  VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  std::size_t shared_memory_bytes = 0;    // maxComputeSharedMemorySize
  std::size_t max_storage_buffer = 0;     // maxStorageBufferRange
  std::size_t max_allocation = 0;         // maxMemoryAllocationSize
  std::uint32_t max_invocations = 0;      // maxComputeWorkGroupInvocations
  std::uint32_t max_group_count[3] = {0, 0, 0};
  std::uint32_t subgroup_size = 0;
  // Basic and shuffle subgroup operations in compute shaders (the tiled
  // forward's row max / sum are xor-shuffles).
  bool subgroup_shuffle = false;
  double timestamp_period_ns = 0;         // 0: the queue has no timestamps
  bool shader_float16 = false, storage_16bit = false;
  bool vulkan_memory_model = false;       // VkPhysicalDeviceVulkan12Features::vulkanMemoryModel
  // VK_NV_cooperative_matrix usable by the coopmat forward (shaders/fwd_cm.comp):
  // the extension and its feature, a 16x16x16 fp16 x fp16 -> fp32 subgroup
  // configuration for compute, the Vulkan memory model (glslang emits it for
  // every NV coopmat shader), fp16 arithmetic and 16-bit storage. When true,
  // the device was created with the extension and those features enabled.
  bool coopmat_f16 = false;
  std::string coopmat_note;               // why coopmat_f16 is false ("" when true)
  // VK_NV_cooperative_matrix2 usable by the coopmat2 forward
  // (shaders/fwd_cm2.comp): VK_KHR_cooperative_matrix with its feature; the
  // coopmat2 features the kernel uses (workgroup scope, flexible dimensions,
  // reductions, conversions, per-element operations, tensor addressing); a
  // flexible-dimensions entry for workgroup-scope fp16 x fp16 -> fp32
  // products (its invocations and granularities below); Vulkan 1.3 with
  // maintenance4 (SPIR-V 1.6; glslang declares a spec-constant workgroup
  // size with LocalSizeId); the memory model, fp16 arithmetic and 16-bit
  // storage. When true, the device was created with both extensions and
  // those features enabled. $RA_VK_NO_CM2=1 makes it false (nothing of
  // coopmat2 enabled, note "off (RA_VK_NO_CM2=1)").
  bool coopmat2 = false;
  std::string coopmat2_note;              // why coopmat2 is false ("" when true)
  std::uint32_t coopmat2_threads = 0;     // workgroupInvocations of the entry
  std::uint32_t coopmat2_granularity[3] = {0, 0, 0};  // M, N, K of the entry
  std::uint32_t coopmat2_max_dimension = 0;  // cooperativeMatrixFlexibleDimensionsMaxDimension
  std::vector<std::string> extensions;    // device extensions (e.g. VK_NV_cooperative_matrix)
  // The driver's statistics of each compiled pipeline (registers, shared
  // memory, instructions: whatever it reports) through
  // VK_KHR_pipeline_executable_properties, enabled only when asked for
  // ($RA_VK_PIPELINE_STATS=1: capturing them may cost compile time) and the
  // device has the extension and its feature; pipeline_stats_note says why
  // not otherwise.
  bool pipeline_stats = false;
  std::string pipeline_stats_note;
  std::string type_name() const;
  std::string api_string() const;  // "1.3.230"
  bool has_extension(const std::string& e) const;
};

class Context;

class Buffer {
 public:
  Buffer() = default;
  Buffer(Context& ctx, std::size_t bytes, bool host_visible);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_; }
  std::size_t bytes() const { return bytes_; }
  void* mapped() const { return mapped_; }  // host-visible buffers only

 private:
  void release() noexcept;
  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  std::size_t bytes_ = 0;
  void* mapped_ = nullptr;
};

// A compute pipeline on the shared layout (one descriptor set of
// kBindings storage buffers, kPushBytes of push constants).
struct Pipeline {
  VkPipeline pipeline = VK_NULL_HANDLE;
};

class Context {
 public:
  static constexpr std::uint32_t kBindings = 16;
  static constexpr std::uint32_t kPushBytes = 32;

  explicit Context(const ContextOptions& opt = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // One context per process for callers that do not manage their own
  // (creating an instance and device costs ~0.1 s, more with validation).
  // Built from ContextOptions{} (the environment) on first use.
  static std::shared_ptr<Context> shared();

  const DeviceInfo& info() const { return info_; }
  // Every device this loader sees, in enumeration order ("index: name (type)").
  static std::vector<std::string> list_devices();
  // Why a validation layer of this spec version keeps the coopmat2 forward
  // off ("" if it does not): layers older than the first header we know to
  // include VK_NV_cooperative_matrix2 (1.4.303) flag the feature and
  // property structures it needs and fail to specialise its shaders (Debian
  // 12's 1.3.239 on the H100, perf v25), so every validated run would fail
  // for the layer's sake. Runs without validation keep coopmat2.
  static std::string coopmat2_layer_note(std::uint32_t layer_spec_version);
  VkDevice device() const { return device_; }
  VkPhysicalDevice physical_device() const { return physical_; }

  bool validation_enabled() const { return validation_; }
  // Validation messages (warnings and errors) since the last call.
  std::vector<std::string> take_validation_messages();

  // Memory type index with the wanted flags (falls back to any allowed type
  // for device-local requests: CPU devices have only host memory).
  std::uint32_t memory_type(std::uint32_t allowed, VkMemoryPropertyFlags want) const;

  void upload(const Buffer& dst, const void* src, std::size_t bytes);
  void download(const Buffer& src, void* dst, std::size_t bytes);
  // Fills every 32-bit word (vkCmdFillBuffer), e.g. with a NaN pattern.
  void fill(const Buffer& dst, std::uint32_t word);

  // Records with `record` into a fresh primary command buffer, submits it and
  // waits for it to finish.
  void submit_and_wait(const std::function<void(VkCommandBuffer)>& record);

  // The compute pipeline of an embedded kernel with these specialization
  // constants (constant_id i = spec[i]; id 0 is the workgroup size), built
  // on first use and cached for the context's lifetime.
  VkPipeline pipeline(const std::string& kernel, const std::vector<std::uint32_t>& spec);
  // Where info().pipeline_stats: the driver's statistics of every pipeline
  // built so far, one line per executable ("fwd_cm [128,64,...] <executable>
  // (subgroup 32): Register Count = 96, ..."), each also printed to stderr
  // as "ra-vk pipeline <line>" when its pipeline is built; empty otherwise.
  std::vector<std::string> pipeline_statistics();
  VkPipelineLayout pipeline_layout() const { return pipeline_layout_; }
  VkDescriptorSetLayout set_layout() const { return set_layout_; }

  // Timestamp query pools for timing (`count` queries; 2: begin, end).
  VkQueryPool create_timestamp_pool(std::uint32_t count = 2);

 private:
  friend class Buffer;
  void destroy() noexcept;
  void create_instance(const ContextOptions& opt);
  void pick_device(const ContextOptions& opt);
  void create_device();
  void ensure_staging(std::size_t bytes);
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                   VkDebugUtilsMessageTypeFlagsEXT type,
                                                   const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                   void* user);

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  std::uint32_t queue_family_ = 0;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout_ = VK_NULL_HANDLE;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties mem_props_{};
  DeviceInfo info_;
  bool validation_ = false;
  std::uint32_t validation_layer_version_ = 0;  // the layer's specVersion where validation_
  std::unique_ptr<Buffer> staging_;
  std::map<std::string, VkShaderModule> modules_;
  std::map<std::pair<std::string, std::vector<std::uint32_t>>, VkPipeline> pipelines_;
  std::vector<std::string> pipeline_stats_;
  std::vector<VkPipelineExecutablePropertiesKHR> pipeline_executables(VkPipeline p);
  std::vector<std::string> read_pipeline_statistics(VkPipeline p);
  void write_internal_representations(VkPipeline p, const std::string& prefix);
  std::mutex messages_mutex_;
  std::vector<std::string> messages_;
  // A context may be shared by threads: one lock per piece of shared state.
  std::mutex submit_mutex_, transfer_mutex_, pipeline_mutex_;
};

// SPIR-V of the embedded kernels (generated at build time from shaders/*.comp).
// Throws std::invalid_argument for an unknown name.
const std::vector<std::uint32_t>& kernel_spirv(const std::string& name);
// Whether the build embedded this kernel (the coopmat2 ones need a glslang
// that the build machine may lack: backends/vulkan/CMakeLists.txt).
bool kernel_embedded(const std::string& name);

}  // namespace ra::vk
