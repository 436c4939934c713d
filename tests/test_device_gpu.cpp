#include "kernels/common/hd.h"
#include "nn/device.h"
#include "test_util.h"
#if CTDET_WITH_CUDA
#include "nn/cuda_context.h"
#endif

TEST(CudaContextGpu, CreatesHandles) {
  CTDET_REQUIRE_GPU();
#if CTDET_WITH_CUDA
  ctdet::CudaContext ctx(0);
  EXPECT_NE(ctx.cublas, nullptr);
  EXPECT_NE(ctx.cudnn, nullptr);
  ctx.synchronize();
#endif
}

TEST(CudaContext, ReasonIsClearWithoutDevice) {
  if (ctdet::cuda_device_available()) GTEST_SKIP() << "a device is present";
  EXPECT_FALSE(ctdet::cuda_unavailable_reason().empty());
  std::printf("reason: %s\n", ctdet::cuda_unavailable_reason().c_str());
}
