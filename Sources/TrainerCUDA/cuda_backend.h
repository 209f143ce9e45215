// The CUDA model backend (model.cu) as C sees it: two tc_model_backend tables.
#ifndef STRATUM_TRAINER_CUDA_BACKEND_H
#define STRATUM_TRAINER_CUDA_BACKEND_H

#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/// TF32 matmuls on the tensor cores, float32 everywhere else: what stratum-trainer-cuda runs.
extern const tc_model_backend tc_cuda_backend;
/// The same kernels with float32 matmuls (slower): `make check` tests the kernels tightly with it.
extern const tc_model_backend tc_cuda_fp32_backend;
/// bf16 linear layers: their operands rounded to bf16, multiplied with float32 accumulation;
/// attention's products in TF32; float32 weights and everything else
/// (`stratum-trainer-cuda --matmul bf16`).
extern const tc_model_backend tc_cuda_bf16_backend;

#ifdef __cplusplus
}
#endif
#endif
