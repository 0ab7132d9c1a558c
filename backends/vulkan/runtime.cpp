// The Vulkan compute runtime (runtime.hpp).
#include <ra/vulkan/runtime.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <utility>

namespace ra::vk {

// ---------------------------------------------------------------------------
// Errors

const char* result_name(VkResult r) {
  switch (r) {
#define RA_VK_CASE(x) \
  case x:             \
    return #x;
    RA_VK_CASE(VK_SUCCESS)
    RA_VK_CASE(VK_NOT_READY)
    RA_VK_CASE(VK_TIMEOUT)
    RA_VK_CASE(VK_INCOMPLETE)
    RA_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    RA_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    RA_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    RA_VK_CASE(VK_ERROR_DEVICE_LOST)
    RA_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    RA_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    RA_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    RA_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    RA_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    RA_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    RA_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    RA_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
    RA_VK_CASE(VK_ERROR_UNKNOWN)
    RA_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    RA_VK_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    RA_VK_CASE(VK_ERROR_FRAGMENTATION)
    RA_VK_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    RA_VK_CASE(VK_PIPELINE_COMPILE_REQUIRED)
    RA_VK_CASE(VK_ERROR_INVALID_SHADER_NV)
#undef RA_VK_CASE
    default:
      return "VK_RESULT_UNKNOWN";
  }
}

namespace {
// "vkCreateBuffer(device_, &info, nullptr, &b)" -> "vkCreateBuffer"
std::string call_name(const char* call) {
  std::string s(call);
  const auto p = s.find('(');
  return p == std::string::npos ? s : s.substr(0, p);
}
}  // namespace

VulkanError::VulkanError(const std::string& call, VkResult r)
    : std::runtime_error(call + " failed: " + result_name(r) + " (" + std::to_string(int(r)) + ")"),
      result_(r) {}

void check(VkResult r, const char* call) {
  if (r != VK_SUCCESS) throw VulkanError(call_name(call), r);
}

// ---------------------------------------------------------------------------
// DeviceInfo

std::string DeviceInfo::type_name() const {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
  }
}

std::string DeviceInfo::api_string() const {
  return std::to_string(VK_API_VERSION_MAJOR(api_version)) + "." +
         std::to_string(VK_API_VERSION_MINOR(api_version)) + "." +
         std::to_string(VK_API_VERSION_PATCH(api_version));
}

bool DeviceInfo::has_extension(const std::string& e) const {
  return std::find(extensions.begin(), extensions.end(), e) != extensions.end();
}

// ---------------------------------------------------------------------------
// Buffer

Buffer::Buffer(Context& ctx, std::size_t bytes, bool host_visible) : device_(ctx.device()) {
  // Zero-sized buffers are invalid in Vulkan; SDPA binds tiny unused ones.
  bytes_ = std::max<std::size_t>(bytes, 16);
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = bytes_;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
             VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  RA_VK_CHECK(vkCreateBuffer(device_, &bi, nullptr, &buffer_));
  try {
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device_, buffer_, &req);
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = ctx.memory_type(
        req.memoryTypeBits, host_visible
                                ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
                                : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    RA_VK_CHECK(vkAllocateMemory(device_, &ai, nullptr, &memory_));
    RA_VK_CHECK(vkBindBufferMemory(device_, buffer_, memory_, 0));
    if (host_visible) RA_VK_CHECK(vkMapMemory(device_, memory_, 0, VK_WHOLE_SIZE, 0, &mapped_));
  } catch (...) {
    release();
    throw;
  }
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (device_ == VK_NULL_HANDLE) return;
  if (mapped_) vkUnmapMemory(device_, memory_);
  if (buffer_) vkDestroyBuffer(device_, buffer_, nullptr);
  if (memory_) vkFreeMemory(device_, memory_, nullptr);
  buffer_ = VK_NULL_HANDLE, memory_ = VK_NULL_HANDLE, mapped_ = nullptr, bytes_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept { *this = std::move(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    device_ = o.device_, buffer_ = o.buffer_, memory_ = o.memory_, bytes_ = o.bytes_,
    mapped_ = o.mapped_;
    o.buffer_ = VK_NULL_HANDLE, o.memory_ = VK_NULL_HANDLE, o.mapped_ = nullptr, o.bytes_ = 0;
  }
  return *this;
}

// ---------------------------------------------------------------------------
// Context

namespace {

const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

// VK_KHR_cooperative_matrix (headers 1.3.255+) and VK_NV_cooperative_matrix2
// (1.3.290+): Debian 12's headers (1.3.239) have neither, so what the
// coopmat2 detection needs is defined here with the Vulkan registry's values
// where the headers lack it. Component types and scopes share their values
// with the NV v1 enums (FLOAT16 0, FLOAT32 1, WORKGROUP 2).
#ifdef VK_KHR_cooperative_matrix
using CoopmatFeaturesKHR = VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
constexpr VkStructureType kSTypeCoopmatFeaturesKHR =
    VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR;
#else
struct CoopmatFeaturesKHR {
  VkStructureType sType;
  void* pNext;
  VkBool32 cooperativeMatrix, cooperativeMatrixRobustBufferAccess;
};
constexpr VkStructureType kSTypeCoopmatFeaturesKHR = VkStructureType(1000506000);
#endif
#ifdef VK_NV_cooperative_matrix2
using Coopmat2Features = VkPhysicalDeviceCooperativeMatrix2FeaturesNV;
using Coopmat2Properties = VkPhysicalDeviceCooperativeMatrix2PropertiesNV;
using Coopmat2Flexible = VkCooperativeMatrixFlexibleDimensionsPropertiesNV;
constexpr VkStructureType kSTypeCoopmat2Features =
    VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV;
constexpr VkStructureType kSTypeCoopmat2Flexible =
    VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV;
constexpr VkStructureType kSTypeCoopmat2Properties =
    VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_PROPERTIES_NV;
#else
struct Coopmat2Features {
  VkStructureType sType;
  void* pNext;
  VkBool32 cooperativeMatrixWorkgroupScope, cooperativeMatrixFlexibleDimensions,
      cooperativeMatrixReductions, cooperativeMatrixConversions,
      cooperativeMatrixPerElementOperations, cooperativeMatrixTensorAddressing,
      cooperativeMatrixBlockLoads;
};
struct Coopmat2Properties {
  VkStructureType sType;
  void* pNext;
  std::uint32_t cooperativeMatrixWorkgroupScopeMaxWorkgroupSize,
      cooperativeMatrixFlexibleDimensionsMaxDimension,
      cooperativeMatrixWorkgroupScopeReservedSharedMemory;
};
struct Coopmat2Flexible {
  VkStructureType sType;
  void* pNext;
  std::uint32_t MGranularity, NGranularity, KGranularity;
  VkComponentTypeNV AType, BType, CType, ResultType;
  VkBool32 saturatingAccumulation;
  VkScopeNV scope;
  std::uint32_t workgroupInvocations;
};
constexpr VkStructureType kSTypeCoopmat2Features = VkStructureType(1000593000);
constexpr VkStructureType kSTypeCoopmat2Flexible = VkStructureType(1000593001);
constexpr VkStructureType kSTypeCoopmat2Properties = VkStructureType(1000593002);
#endif
const char* kCoopmatKHR = "VK_KHR_cooperative_matrix";
const char* kCoopmat2 = "VK_NV_cooperative_matrix2";
using PFN_Coopmat2FlexibleList = VkResult(VKAPI_PTR*)(VkPhysicalDevice, std::uint32_t*, Coopmat2Flexible*);

// Links Vulkan structs into one pNext chain in the order given (the last
// one's pNext is left as it was).
template <class A>
void chain(A&) {}
template <class A, class B, class... Rest>
void chain(A& a, B& b, Rest&... rest) {
  a.pNext = &b;
  chain(b, rest...);
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::string(v) != "0";
}

// Higher is better: a discrete GPU over an integrated one over a CPU device,
// NVIDIA first among equals (the machines this project measures on).
int device_rank(const VkPhysicalDeviceProperties& p) {
  int r = 0;
  switch (p.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: r = 40; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: r = 30; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: r = 20; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: r = 10; break;
    default: r = 0;
  }
  if (p.vendorID == 0x10de) r += 1;
  return r;
}

bool has_compute_queue(VkPhysicalDevice pd, std::uint32_t* family) {
  std::uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
  std::vector<VkQueueFamilyProperties> fams(n);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, fams.data());
  // Prefer a compute-only family (an async compute queue on GPUs), else any with compute.
  int best = -1;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!(fams[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (best < 0 || !(fams[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) best = int(i);
  }
  if (best < 0) return false;
  if (family) *family = std::uint32_t(best);
  return true;
}

std::vector<VkPhysicalDevice> physical_devices(VkInstance inst) {
  std::uint32_t n = 0;
  RA_VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, nullptr));
  std::vector<VkPhysicalDevice> out(n);
  if (n) RA_VK_CHECK(vkEnumeratePhysicalDevices(inst, &n, out.data()));
  out.resize(n);
  return out;
}

// The API version the instance asks for: 1.3 where the loader has it (the
// coopmat2 kernels are SPIR-V 1.6, which needs an effective version of 1.3:
// the lower of this and the device's), else 1.2.
std::uint32_t instance_api_version() {
  std::uint32_t loader = VK_API_VERSION_1_0;
  auto enumerate = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
      vkGetInstanceProcAddr(nullptr, "vkEnumerateInstanceVersion"));
  if (!enumerate || enumerate(&loader) != VK_SUCCESS) loader = VK_API_VERSION_1_0;
  return loader >= VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : VK_API_VERSION_1_2;
}

VkInstance bare_instance(const std::vector<const char*>& layers,
                         const std::vector<const char*>& exts) {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "ra-kokkos";
  app.apiVersion = instance_api_version();
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = std::uint32_t(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = std::uint32_t(exts.size());
  ci.ppEnabledExtensionNames = exts.data();
  VkInstance inst = VK_NULL_HANDLE;
  const VkResult r = vkCreateInstance(&ci, nullptr, &inst);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    throw NoDeviceError(
        "no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER); install a GPU "
        "driver or Mesa's lavapipe (mesa-vulkan-drivers), or point VK_ICD_FILENAMES at an ICD json");
  RA_VK_CHECK(r);
  return inst;
}

// Why the coopmat2 forward cannot run on this device ("" if it can; see
// DeviceInfo::coopmat2), and the workgroup-scope entry it would use.
// layer_version: the validation layer's spec version, 0 without validation.
std::string coopmat2_refusal(VkInstance inst, VkPhysicalDevice pd, DeviceInfo& info,
                             std::uint32_t layer_version) {
  if (!info.has_extension(kCoopmat2)) return std::string("no ") + kCoopmat2 + " on " + info.name;
  if (!info.has_extension(kCoopmatKHR)) return std::string("no ") + kCoopmatKHR;
  // Before any query that chains the structures an old layer would flag.
  if (layer_version != 0) {
    const std::string why = Context::coopmat2_layer_note(layer_version);
    if (!why.empty()) return why;
  }
  if (std::min(info.api_version, instance_api_version()) < VK_API_VERSION_1_3)
    return "Vulkan " + info.api_string() + " device or loader (SPIR-V 1.6 needs 1.3)";
  if (!(info.shader_float16 && info.storage_16bit)) return "no shaderFloat16 + storageBuffer16BitAccess";
  if (!info.vulkan_memory_model) return "no vulkanMemoryModel";

  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  CoopmatFeaturesKHR khr{kSTypeCoopmatFeaturesKHR};
  Coopmat2Features cm2{kSTypeCoopmat2Features};
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  chain(f2, f13, khr, cm2);
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  if (!f13.maintenance4) return "no maintenance4 (the kernel's workgroup size is a LocalSizeId)";
  if (!khr.cooperativeMatrix) return std::string(kCoopmatKHR) + " without its cooperativeMatrix feature";
  const std::pair<VkBool32, const char*> needed[] = {
      {cm2.cooperativeMatrixWorkgroupScope, "cooperativeMatrixWorkgroupScope"},
      {cm2.cooperativeMatrixFlexibleDimensions, "cooperativeMatrixFlexibleDimensions"},
      {cm2.cooperativeMatrixReductions, "cooperativeMatrixReductions"},
      {cm2.cooperativeMatrixConversions, "cooperativeMatrixConversions"},
      {cm2.cooperativeMatrixPerElementOperations, "cooperativeMatrixPerElementOperations"},
      {cm2.cooperativeMatrixTensorAddressing, "cooperativeMatrixTensorAddressing"}};
  for (const auto& [have, name] : needed)
    if (!have) return std::string(kCoopmat2) + " without " + name;

  Coopmat2Properties props{kSTypeCoopmat2Properties};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &props;
  vkGetPhysicalDeviceProperties2(pd, &p2);
  info.coopmat2_max_dimension = props.cooperativeMatrixFlexibleDimensionsMaxDimension;
  auto list = reinterpret_cast<PFN_Coopmat2FlexibleList>(
      vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV"));
  if (!list) return "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV not exported";
  std::uint32_t n = 0;
  RA_VK_CHECK(list(pd, &n, nullptr));
  std::vector<Coopmat2Flexible> entries(n, Coopmat2Flexible{kSTypeCoopmat2Flexible});
  if (n) RA_VK_CHECK(list(pd, &n, entries.data()));
  entries.resize(n);
  // Workgroup scope, fp16 x fp16 -> fp32; 128 invocations preferred (4 warps
  // on NVIDIA: the matrices of a 64-row tile spread over them), else the
  // smallest the device and the workgroup-scope limit allow.
  const Coopmat2Flexible* best = nullptr;
  for (const auto& e : entries) {
    if (!(std::uint32_t(e.AType) == 0 && std::uint32_t(e.BType) == 0 && std::uint32_t(e.CType) == 1 &&
          std::uint32_t(e.ResultType) == 1 && std::uint32_t(e.scope) == 2))
      continue;
    if (e.workgroupInvocations > props.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize ||
        e.workgroupInvocations > info.max_invocations)
      continue;
    if (!best || (e.workgroupInvocations == 128) ||
        (best->workgroupInvocations != 128 && e.workgroupInvocations < best->workgroupInvocations))
      best = &e;
  }
  if (!best) {
    // What it does list (component types: 0 fp16, 1 fp32; scope 2 workgroup,
    // 3 subgroup), for whoever adapts the kernel.
    std::string why = std::string(kCoopmat2) + " lists no workgroup-scope fp16 x fp16 -> fp32 entry within " +
                      std::to_string(props.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize) +
                      " invocations; entries (A B C R scope MxNxK invocations):";
    for (const auto& e : entries)
      why += " [" + std::to_string(e.AType) + " " + std::to_string(e.BType) + " " + std::to_string(e.CType) +
             " " + std::to_string(e.ResultType) + " " + std::to_string(e.scope) + " " +
             std::to_string(e.MGranularity) + "x" + std::to_string(e.NGranularity) + "x" +
             std::to_string(e.KGranularity) + " " + std::to_string(e.workgroupInvocations) + "]";
    return why;
  }
  info.coopmat2_threads = best->workgroupInvocations;
  info.coopmat2_granularity[0] = best->MGranularity;
  info.coopmat2_granularity[1] = best->NGranularity;
  info.coopmat2_granularity[2] = best->KGranularity;
  return "";
}

}  // namespace

Context::Context(const ContextOptions& opt) {
  try {
    create_instance(opt);
    pick_device(opt);
    create_device();
  } catch (...) {
    destroy();  // a throwing constructor runs no destructor
    throw;
  }
}

Context::~Context() { destroy(); }

void Context::destroy() noexcept {
  if (device_) {
    vkDeviceWaitIdle(device_);
    staging_.reset();
    for (auto& [k, p] : pipelines_) vkDestroyPipeline(device_, p, nullptr);
    for (auto& [k, m] : modules_) vkDestroyShaderModule(device_, m, nullptr);
    pipelines_.clear(), modules_.clear();
    if (pipeline_cache_) vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
    if (pipeline_layout_) vkDestroyPipelineLayout(device_, pipeline_layout_, nullptr);
    if (set_layout_) vkDestroyDescriptorSetLayout(device_, set_layout_, nullptr);
    if (fence_) vkDestroyFence(device_, fence_, nullptr);
    if (pool_) vkDestroyCommandPool(device_, pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
    device_ = VK_NULL_HANDLE;
  }
  if (messenger_) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy) destroy(instance_, messenger_, nullptr);
    messenger_ = VK_NULL_HANDLE;
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
  instance_ = VK_NULL_HANDLE;
}

std::shared_ptr<Context> Context::shared() {
  static std::mutex m;
  static std::shared_ptr<Context> ctx;
  std::lock_guard<std::mutex> lock(m);
  if (!ctx) ctx = std::make_shared<Context>();
  return ctx;
}

VKAPI_ATTR VkBool32 VKAPI_CALL Context::on_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT sev, VkDebugUtilsMessageTypeFlagsEXT,
    const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  auto* self = static_cast<Context*>(user);
  std::string msg = sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error: " : "warning: ";
  msg += data && data->pMessage ? data->pMessage : "(no message)";
  std::lock_guard<std::mutex> lock(self->messages_mutex_);
  self->messages_.push_back(std::move(msg));
  return VK_FALSE;  // never abort the call: the caller decides what a message means
}

std::vector<std::string> Context::take_validation_messages() {
  std::lock_guard<std::mutex> lock(messages_mutex_);
  std::vector<std::string> out;
  out.swap(messages_);
  return out;
}

void Context::create_instance(const ContextOptions& opt) {
#ifdef NDEBUG
  const bool debug_build = false;
#else
  const bool debug_build = true;
#endif
  bool want_validation =
      opt.validation >= 0 ? opt.validation != 0 : env_flag("RA_VK_VALIDATION", debug_build);
  std::vector<const char*> layers, exts;
  if (want_validation) {
    std::uint32_t n = 0;
    RA_VK_CHECK(vkEnumerateInstanceLayerProperties(&n, nullptr));
    std::vector<VkLayerProperties> props(n);
    RA_VK_CHECK(vkEnumerateInstanceLayerProperties(&n, props.data()));
    const auto layer = std::find_if(props.begin(), props.end(), [](const VkLayerProperties& p) {
      return std::strcmp(p.layerName, kValidationLayer) == 0;
    });
    const bool have = layer != props.end();
    if (have) validation_layer_version_ = layer->specVersion;
    if (!have) {
      // Explicitly asked for: say so. From a debug-build default: run without.
      if (opt.validation == 1 || env_flag("RA_VK_VALIDATION", false))
        throw std::runtime_error(
            std::string("Vulkan validation requested but ") + kValidationLayer +
            " is not installed (Debian: vulkan-validationlayers)");
      want_validation = false;
    }
  }
  if (want_validation) {
    layers.push_back(kValidationLayer);
    exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }
  instance_ = bare_instance(layers, exts);
  validation_ = want_validation;
  if (validation_) {
    auto create = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT"));
    if (!create) throw std::runtime_error("vkCreateDebugUtilsMessengerEXT not available");
    VkDebugUtilsMessengerCreateInfoEXT mi{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
    mi.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    mi.pfnUserCallback = &Context::on_message;
    mi.pUserData = this;
    RA_VK_CHECK(create(instance_, &mi, nullptr, &messenger_));
  }
}

std::string Context::coopmat2_layer_note(std::uint32_t v) {
  if (v >= VK_MAKE_API_VERSION(0, 1, 4, 303)) return "";
  return "off with validation: " + std::string(kValidationLayer) + " " +
         std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v)) + " predates " + kCoopmat2 +
         " (it flags the structures coopmat2 needs; RA_VK_VALIDATION=0 runs it)";
}

std::vector<std::string> Context::list_devices() {
  VkInstance inst = bare_instance({}, {});
  std::vector<std::string> out;
  try {
    const auto pds = physical_devices(inst);
    for (std::size_t i = 0; i < pds.size(); ++i) {
      VkPhysicalDeviceProperties p;
      vkGetPhysicalDeviceProperties(pds[i], &p);
      DeviceInfo tmp;
      tmp.type = p.deviceType;
      out.push_back(std::to_string(i) + ": " + p.deviceName + " (" + tmp.type_name() + ")");
    }
  } catch (...) {
    vkDestroyInstance(inst, nullptr);
    throw;
  }
  vkDestroyInstance(inst, nullptr);
  return out;
}

void Context::pick_device(const ContextOptions& opt) {
  const auto pds = physical_devices(instance_);
  if (pds.empty())
    throw NoDeviceError(
        "no Vulkan device found (the loader found no driver with a device); install a GPU driver "
        "or Mesa's lavapipe (mesa-vulkan-drivers)");
  std::string want = opt.device;
  if (want.empty())
    if (const char* e = std::getenv("RA_VK_DEVICE")) want = e;

  std::vector<std::string> names;
  int chosen = -1, best_rank = -1;
  for (std::size_t i = 0; i < pds.size(); ++i) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pds[i], &p);
    names.push_back(std::to_string(i) + ": " + p.deviceName);
    if (p.apiVersion < VK_API_VERSION_1_2 || !has_compute_queue(pds[i], nullptr)) continue;
    if (!want.empty()) {
      const bool is_index = std::all_of(want.begin(), want.end(), ::isdigit);
      const bool match = is_index ? std::stoul(want) == i
                                  : lower(p.deviceName).find(lower(want)) != std::string::npos;
      if (match && chosen < 0) chosen = int(i);
      continue;
    }
    if (device_rank(p) > best_rank) best_rank = device_rank(p), chosen = int(i);
  }
  if (chosen < 0) {
    std::string list;
    for (const auto& n : names) list += "\n  " + n;
    throw NoDeviceError((want.empty() ? std::string("no Vulkan 1.2 device with a compute queue")
                                      : "no Vulkan 1.2 compute device matches RA_VK_DEVICE / "
                                        "--vk-device '" + want + "'") +
                        "; devices:" + list);
  }
  physical_ = pds[chosen];
  has_compute_queue(physical_, &queue_family_);

  VkPhysicalDeviceSubgroupProperties sub{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  chain(p2, sub, m3, drv);
  vkGetPhysicalDeviceProperties2(physical_, &p2);
  const auto& p = p2.properties;
  info_.name = p.deviceName;
  info_.driver_name = drv.driverName;
  info_.driver_info = drv.driverInfo;
  info_.vendor_id = p.vendorID, info_.device_id = p.deviceID;
  info_.api_version = p.apiVersion, info_.driver_version = p.driverVersion;
  info_.type = p.deviceType;
  info_.shared_memory_bytes = p.limits.maxComputeSharedMemorySize;
  info_.max_storage_buffer = p.limits.maxStorageBufferRange;
  info_.max_allocation = m3.maxMemoryAllocationSize;
  info_.max_invocations = p.limits.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) info_.max_group_count[i] = p.limits.maxComputeWorkGroupCount[i];
  info_.subgroup_size = sub.subgroupSize;
  info_.subgroup_shuffle =
      (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
      (sub.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
      (sub.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);

  std::uint32_t nf = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nf, nullptr);
  std::vector<VkQueueFamilyProperties> fams(nf);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &nf, fams.data());
  info_.timestamp_period_ns =
      fams[queue_family_].timestampValidBits ? double(p.limits.timestampPeriod) : 0.0;

  std::uint32_t ne = 0;
  RA_VK_CHECK(vkEnumerateDeviceExtensionProperties(physical_, nullptr, &ne, nullptr));
  std::vector<VkExtensionProperties> exts(ne);
  RA_VK_CHECK(vkEnumerateDeviceExtensionProperties(physical_, nullptr, &ne, exts.data()));
  for (const auto& e : exts) info_.extensions.push_back(e.extensionName);
  const bool has_cm = info_.has_extension(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);

  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  f12.pNext = &s16;
  if (has_cm) s16.pNext = &cmf;  // only chain what the device knows
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  const bool has_pe = info_.has_extension(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
  if (has_pe) {  // in front of the rest of the chain
    pef.pNext = f12.pNext;
    f12.pNext = &pef;
  }
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f12;
  vkGetPhysicalDeviceFeatures2(physical_, &f2);
  if (!env_flag("RA_VK_PIPELINE_STATS", false))
    info_.pipeline_stats_note = "off (RA_VK_PIPELINE_STATS=1 turns it on)";
  else if (!has_pe)
    info_.pipeline_stats_note = "no VK_KHR_pipeline_executable_properties on " + info_.name;
  else if (!pef.pipelineExecutableInfo)
    info_.pipeline_stats_note = "VK_KHR_pipeline_executable_properties without its pipelineExecutableInfo feature";
  info_.pipeline_stats = info_.pipeline_stats_note.empty();
  info_.shader_float16 = f12.shaderFloat16;
  info_.storage_16bit = s16.storageBuffer16BitAccess;
  info_.vulkan_memory_model = f12.vulkanMemoryModel;
  vkGetPhysicalDeviceMemoryProperties(physical_, &mem_props_);

  // The coopmat forward's requirements, first missing one named.
  std::string& why = info_.coopmat_note;
  if (!has_cm) {
    why = "no VK_NV_cooperative_matrix on " + info_.name;
    if (info_.has_extension("VK_KHR_cooperative_matrix"))
      why += " (it has VK_KHR_cooperative_matrix: only the coopmat2 forward uses that)";
  } else if (!cmf.cooperativeMatrix) {
    why = "VK_NV_cooperative_matrix without its cooperativeMatrix feature";
  } else if (!(info_.shader_float16 && info_.storage_16bit)) {
    why = "no shaderFloat16 + storageBuffer16BitAccess";
  } else if (!info_.vulkan_memory_model) {
    why = "no vulkanMemoryModel (NV coopmat shaders use the Vulkan memory model)";
  } else {
    VkPhysicalDeviceCooperativeMatrixPropertiesNV cmp{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 cp2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    cp2.pNext = &cmp;
    vkGetPhysicalDeviceProperties2(physical_, &cp2);
    auto list = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
        vkGetInstanceProcAddr(instance_, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
    bool found = false;
    if (list) {
      std::uint32_t n = 0;
      RA_VK_CHECK(list(physical_, &n, nullptr));
      std::vector<VkCooperativeMatrixPropertiesNV> cfg(
          n, VkCooperativeMatrixPropertiesNV{VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
      if (n) RA_VK_CHECK(list(physical_, &n, cfg.data()));
      cfg.resize(n);
      for (const auto& c : cfg)
        found = found || (c.MSize == 16 && c.NSize == 16 && c.KSize == 16 &&
                          c.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                          c.BType == VK_COMPONENT_TYPE_FLOAT16_NV &&
                          c.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
                          c.DType == VK_COMPONENT_TYPE_FLOAT32_NV && c.scope == VK_SCOPE_SUBGROUP_NV);
    }
    if (!list)
      why = "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV not exported by the driver";
    else if (!found)
      why = "VK_NV_cooperative_matrix lists no 16x16x16 fp16 x fp16 -> fp32 subgroup configuration";
    else if (!(cmp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT))
      why = "VK_NV_cooperative_matrix not supported in compute shaders";
  }
  info_.coopmat_f16 = why.empty();
  // RA_VK_NO_CM2=1: the device is created as before coopmat2 existed (no
  // VK_KHR_cooperative_matrix / VK_NV_cooperative_matrix2 enabled), so the
  // forward takes the older paths; also for validation layers too old to know
  // those extensions.
  info_.coopmat2_note = env_flag("RA_VK_NO_CM2", false) ? "off (RA_VK_NO_CM2=1)"
                                                         : coopmat2_refusal(instance_, physical_, info_,
                                                                            validation_ ? validation_layer_version_ : 0);
  info_.coopmat2 = info_.coopmat2_note.empty();
}

void Context::create_device() {
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qi.queueFamilyIndex = queue_family_;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;

  // fp16 storage / arithmetic where the device has them (the fp16 kernels need both).
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  f12.shaderFloat16 = info_.shader_float16;
  VkPhysicalDevice16BitStorageFeatures s16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  s16.storageBuffer16BitAccess = info_.storage_16bit;
  f12.pNext = &s16;
  // The coopmat forward: the extension, its feature and the memory model,
  // only where pick_device() found everything it needs.
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  std::vector<const char*> exts;
  if (info_.coopmat_f16) {
    cmf.cooperativeMatrix = VK_TRUE;
    s16.pNext = &cmf;
    f12.vulkanMemoryModel = VK_TRUE;
    exts.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
  }
  // The coopmat2 forward: both extensions, the features coopmat2_refusal()
  // checked, maintenance4 (Vulkan 1.3 device) and the memory model.
  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  CoopmatFeaturesKHR khr{kSTypeCoopmatFeaturesKHR};
  Coopmat2Features cm2{kSTypeCoopmat2Features};
  if (info_.coopmat2) {
    f13.maintenance4 = VK_TRUE;
    khr.cooperativeMatrix = VK_TRUE;
    cm2.cooperativeMatrixWorkgroupScope = cm2.cooperativeMatrixFlexibleDimensions =
        cm2.cooperativeMatrixReductions = cm2.cooperativeMatrixConversions =
            cm2.cooperativeMatrixPerElementOperations = cm2.cooperativeMatrixTensorAddressing = VK_TRUE;
    cm2.pNext = f12.pNext;  // in front of what f12 already leads to
    chain(f12, f13, khr, cm2);
    f12.vulkanMemoryModel = VK_TRUE;
    exts.push_back(kCoopmatKHR);
    exts.push_back(kCoopmat2);
  }
  // Pipeline statistics, only when asked for and available (pick_device()).
  VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
  if (info_.pipeline_stats) {
    pef.pipelineExecutableInfo = VK_TRUE;
    pef.pNext = f12.pNext;
    f12.pNext = &pef;
    exts.push_back(VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);
  }
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f12;

  VkDeviceCreateInfo di{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  di.pNext = &f2;
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  di.enabledExtensionCount = std::uint32_t(exts.size());
  di.ppEnabledExtensionNames = exts.data();
  RA_VK_CHECK(vkCreateDevice(physical_, &di, nullptr, &device_));
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = queue_family_;
  RA_VK_CHECK(vkCreateCommandPool(device_, &pi, nullptr, &pool_));
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  RA_VK_CHECK(vkCreateFence(device_, &fi, nullptr, &fence_));

  std::vector<VkDescriptorSetLayoutBinding> bindings(kBindings);
  for (std::uint32_t i = 0; i < kBindings; ++i) {
    bindings[i] = {};
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo li{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  li.bindingCount = kBindings;
  li.pBindings = bindings.data();
  RA_VK_CHECK(vkCreateDescriptorSetLayout(device_, &li, nullptr, &set_layout_));
  VkPushConstantRange pr{VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushBytes};
  VkPipelineLayoutCreateInfo pli{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pli.setLayoutCount = 1;
  pli.pSetLayouts = &set_layout_;
  pli.pushConstantRangeCount = 1;
  pli.pPushConstantRanges = &pr;
  RA_VK_CHECK(vkCreatePipelineLayout(device_, &pli, nullptr, &pipeline_layout_));
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  RA_VK_CHECK(vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_));
}

std::uint32_t Context::memory_type(std::uint32_t allowed, VkMemoryPropertyFlags want) const {
  for (std::uint32_t i = 0; i < mem_props_.memoryTypeCount; ++i)
    if ((allowed & (1u << i)) && (mem_props_.memoryTypes[i].propertyFlags & want) == want) return i;
  if (!(want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
    for (std::uint32_t i = 0; i < mem_props_.memoryTypeCount; ++i)
      if (allowed & (1u << i)) return i;
  throw std::runtime_error("Vulkan: no memory type with the required properties on " + info_.name);
}

void Context::ensure_staging(std::size_t bytes) {
  if (!staging_ || staging_->bytes() < bytes)
    staging_ = std::make_unique<Buffer>(*this, std::max<std::size_t>(bytes, 1 << 20), true);
}

void Context::submit_and_wait(const std::function<void(VkCommandBuffer)>& record) {
  std::lock_guard<std::mutex> lock(submit_mutex_);
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkCommandBuffer cb;
  RA_VK_CHECK(vkAllocateCommandBuffers(device_, &ai, &cb));
  struct Free {
    VkDevice d;
    VkCommandPool p;
    VkCommandBuffer c;
    ~Free() { vkFreeCommandBuffers(d, p, 1, &c); }
  } free_cb{device_, pool_, cb};
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  RA_VK_CHECK(vkBeginCommandBuffer(cb, &bi));
  record(cb);
  RA_VK_CHECK(vkEndCommandBuffer(cb));
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  RA_VK_CHECK(vkResetFences(device_, 1, &fence_));
  RA_VK_CHECK(vkQueueSubmit(queue_, 1, &si, fence_));
  RA_VK_CHECK(vkWaitForFences(device_, 1, &fence_, VK_TRUE, UINT64_MAX));
}

void Context::upload(const Buffer& dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(transfer_mutex_);  // one staging buffer
  if (bytes > dst.bytes()) throw std::invalid_argument("Vulkan upload larger than its buffer");
  ensure_staging(bytes);
  std::memcpy(staging_->mapped(), src, bytes);
  submit_and_wait([&](VkCommandBuffer cb) {
    VkBufferCopy c{0, 0, bytes};
    vkCmdCopyBuffer(cb, staging_->handle(), dst.handle(), 1, &c);
  });
}

void Context::download(const Buffer& src, void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  std::lock_guard<std::mutex> lock(transfer_mutex_);
  if (bytes > src.bytes()) throw std::invalid_argument("Vulkan download larger than its buffer");
  ensure_staging(bytes);
  submit_and_wait([&](VkCommandBuffer cb) {
    VkBufferCopy c{0, 0, bytes};
    vkCmdCopyBuffer(cb, src.handle(), staging_->handle(), 1, &c);
    // Make the copy visible to the host read after the fence.
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb,
                         0, nullptr, 0, nullptr);
  });
  std::memcpy(dst, staging_->mapped(), bytes);
}

void Context::fill(const Buffer& dst, std::uint32_t word) {
  submit_and_wait([&](VkCommandBuffer cb) {
    vkCmdFillBuffer(cb, dst.handle(), 0, VK_WHOLE_SIZE, word);
  });
}

VkPipeline Context::pipeline(const std::string& kernel, const std::vector<std::uint32_t>& spec) {
  std::lock_guard<std::mutex> lock(pipeline_mutex_);
  auto key = std::make_pair(kernel, spec);
  if (auto it = pipelines_.find(key); it != pipelines_.end()) return it->second;

  VkShaderModule& mod = modules_[kernel];
  if (!mod) {
    const auto& code = kernel_spirv(kernel);
    VkShaderModuleCreateInfo mi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    mi.codeSize = code.size() * sizeof(std::uint32_t);
    mi.pCode = code.data();
    RA_VK_CHECK(vkCreateShaderModule(device_, &mi, nullptr, &mod));
  }
  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (std::uint32_t i = 0; i < spec.size(); ++i)
    entries[i] = {i, std::uint32_t(i * sizeof(std::uint32_t)), sizeof(std::uint32_t)};
  VkSpecializationInfo si{};
  si.mapEntryCount = std::uint32_t(entries.size());
  si.pMapEntries = entries.data();
  si.dataSize = spec.size() * sizeof(std::uint32_t);
  si.pData = spec.data();
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = mod;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = &si;
  ci.layout = pipeline_layout_;
  if (info_.pipeline_stats) ci.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
  // $RA_VK_PIPELINE_IR=<folder> (with the statistics on): the driver's
  // internal representations of every pipeline, one file each.
  const char* ir_dir = std::getenv("RA_VK_PIPELINE_IR");
  const bool want_ir = info_.pipeline_stats && ir_dir && *ir_dir;
  if (want_ir) ci.flags |= VK_PIPELINE_CREATE_CAPTURE_INTERNAL_REPRESENTATIONS_BIT_KHR;
  std::string spec_text;
  for (std::size_t i = 0; i < spec.size(); ++i) spec_text += (i ? "," : "") + std::to_string(spec[i]);
  // $RA_VK_PIPELINE_CACHE_DUMP=<folder>: each pipeline is built into a cache
  // of its own, whose data (vkGetPipelineCacheData: the driver's compiled
  // code in its own format) goes to <folder>/<kernel>-<spec, '_' between>.pcache. The one
  // window on NVIDIA's machine code for a Vulkan kernel, whose driver keeps
  // no internal representations (docs/vulkan.md, "Reading the driver's code").
  const char* dump_dir = std::getenv("RA_VK_PIPELINE_CACHE_DUMP");
  VkPipelineCache cache = pipeline_cache_;
  if (dump_dir && *dump_dir) {
    VkPipelineCacheCreateInfo pci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    RA_VK_CHECK(vkCreatePipelineCache(device_, &pci, nullptr, &cache));
  }
  VkPipeline p = VK_NULL_HANDLE;
  const VkResult made = vkCreateComputePipelines(device_, cache, 1, &ci, nullptr, &p);
  if (cache != pipeline_cache_) {
    std::size_t n = 0;
    std::vector<char> data;
    if (made == VK_SUCCESS && vkGetPipelineCacheData(device_, cache, &n, nullptr) == VK_SUCCESS) {
      data.resize(n);
      if (vkGetPipelineCacheData(device_, cache, &n, data.data()) != VK_SUCCESS) data.clear();
    }
    vkDestroyPipelineCache(device_, cache, nullptr);
    std::string name = kernel + "-" + spec_text;
    std::replace(name.begin(), name.end(), ',', '_');  // plain file names
    const std::string path = std::string(dump_dir) + "/" + name + ".pcache";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    const int err = f ? EIO : errno;  // why, if it fails
    bool ok = f && std::fwrite(data.data(), 1, data.size(), f) == data.size();
    if (f) ok = std::fclose(f) == 0 && ok;
    if (f && !ok) std::remove(path.c_str());  // no partial blob left behind
    std::fprintf(stderr, "ra-vk pipeline cache %s: %zu bytes%s%s\n", path.c_str(), data.size(),
                 ok ? "" : ", NOT WRITTEN: ", ok ? "" : std::strerror(err));
  }
  ::ra::vk::check(made, "vkCreateComputePipelines");
  if (info_.pipeline_stats) {
    auto lines = read_pipeline_statistics(p);
    for (const auto& l : lines) {
      pipeline_stats_.push_back(kernel + " [" + spec_text + "] " + l);
      std::fprintf(stderr, "ra-vk pipeline %s\n", pipeline_stats_.back().c_str());
    }
    if (want_ir) write_internal_representations(p, std::string(ir_dir) + "/" + kernel + "-" + spec_text);
  }
  pipelines_.emplace(std::move(key), p);
  return p;
}

std::vector<std::string> Context::pipeline_statistics() {
  std::lock_guard<std::mutex> lock(pipeline_mutex_);
  return pipeline_stats_;
}

// One line per executable of p: its name, then every statistic the driver
// reports ("name = value"). Extension entry points come from the device.
// The executables of p (VK_KHR_pipeline_executable_properties); none where
// the driver exports no entry point for them.
std::vector<VkPipelineExecutablePropertiesKHR> Context::pipeline_executables(VkPipeline p) {
  auto props_fn = reinterpret_cast<PFN_vkGetPipelineExecutablePropertiesKHR>(
      vkGetDeviceProcAddr(device_, "vkGetPipelineExecutablePropertiesKHR"));
  if (!props_fn) return {};
  VkPipelineInfoKHR pi{VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR};
  pi.pipeline = p;
  std::uint32_t ne = 0;
  RA_VK_CHECK(props_fn(device_, &pi, &ne, nullptr));
  std::vector<VkPipelineExecutablePropertiesKHR> execs(ne, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR});
  RA_VK_CHECK(props_fn(device_, &pi, &ne, execs.data()));
  return execs;
}

std::vector<std::string> Context::read_pipeline_statistics(VkPipeline p) {
  auto stats_fn = reinterpret_cast<PFN_vkGetPipelineExecutableStatisticsKHR>(
      vkGetDeviceProcAddr(device_, "vkGetPipelineExecutableStatisticsKHR"));
  const auto execs = pipeline_executables(p);
  if (!stats_fn || execs.empty()) return {"(the driver exports no pipeline statistics entry points)"};
  const auto ne = std::uint32_t(execs.size());
  std::vector<std::string> lines;
  for (std::uint32_t e = 0; e < ne; ++e) {
    VkPipelineExecutableInfoKHR ei{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
    ei.pipeline = p;
    ei.executableIndex = e;
    std::uint32_t ns = 0;
    RA_VK_CHECK(stats_fn(device_, &ei, &ns, nullptr));
    std::vector<VkPipelineExecutableStatisticKHR> st(ns, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR});
    RA_VK_CHECK(stats_fn(device_, &ei, &ns, st.data()));
    std::string line = std::string(execs[e].name) + " (subgroup " + std::to_string(execs[e].subgroupSize) + "):";
    for (std::uint32_t i = 0; i < ns; ++i) {
      line += (i ? ", " : " ") + std::string(st[i].name) + " = ";
      switch (st[i].format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: line += st[i].value.b32 ? "true" : "false"; break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: line += std::to_string(st[i].value.i64); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: line += std::to_string(st[i].value.u64); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR: line += std::to_string(st[i].value.f64); break;
        default: line += "?";
      }
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

// Every internal representation the driver keeps of p's executables (what
// it compiled the SPIR-V to), as <prefix>-<executable>-<n>-<name>.txt (text)
// or .bin; a line on stderr per file, or that there were none.
void Context::write_internal_representations(VkPipeline p, const std::string& prefix) {
  auto ir_fn = reinterpret_cast<PFN_vkGetPipelineExecutableInternalRepresentationsKHR>(
      vkGetDeviceProcAddr(device_, "vkGetPipelineExecutableInternalRepresentationsKHR"));
  const auto ne = std::uint32_t(pipeline_executables(p).size());
  if (!ir_fn || ne == 0) {
    std::fprintf(stderr, "ra-vk pipeline IR: the driver exports no entry point for it\n");
    return;
  }
  for (std::uint32_t e = 0; e < ne; ++e) {
    VkPipelineExecutableInfoKHR ei{VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR};
    ei.pipeline = p;
    ei.executableIndex = e;
    std::uint32_t nr = 0;
    RA_VK_CHECK(ir_fn(device_, &ei, &nr, nullptr));
    if (nr == 0) std::fprintf(stderr, "ra-vk pipeline IR: %s: the driver keeps none\n", prefix.c_str());
    std::vector<VkPipelineExecutableInternalRepresentationKHR> reps(
        nr, {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INTERNAL_REPRESENTATION_KHR});
    RA_VK_CHECK(ir_fn(device_, &ei, &nr, reps.data()));  // sizes
    std::vector<std::vector<char>> data(nr);
    for (std::uint32_t r = 0; r < nr; ++r) {
      data[r].resize(reps[r].dataSize);
      reps[r].pData = data[r].data();
    }
    RA_VK_CHECK(ir_fn(device_, &ei, &nr, reps.data()));
    for (std::uint32_t r = 0; r < nr; ++r) {
      std::string name = reps[r].name;
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      const std::string path = prefix + "-" + std::to_string(e) + "-" + std::to_string(r) + "-" + name +
                               (reps[r].isText ? ".txt" : ".bin");
      std::size_t n = reps[r].dataSize;
      if (reps[r].isText && n && data[r][n - 1] == '\0') --n;  // text ends in a NUL
      if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data[r].data(), 1, n, f);
        std::fclose(f);
        std::fprintf(stderr, "ra-vk pipeline IR: %s (%s, %zu bytes)\n", path.c_str(), reps[r].description, n);
      } else {
        std::fprintf(stderr, "ra-vk pipeline IR: cannot write %s\n", path.c_str());
      }
    }
  }
}

VkQueryPool Context::create_timestamp_pool(std::uint32_t count) {
  VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
  qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qi.queryCount = count;
  VkQueryPool pool;
  RA_VK_CHECK(vkCreateQueryPool(device_, &qi, nullptr, &pool));
  return pool;
}

}  // namespace ra::vk
