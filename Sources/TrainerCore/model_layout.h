// The parameter layout every model backend shares (not part of the public API).
//
// Parameters are 16 tensors in this order in one flat float array; gradients and the AdamW
// moments use the same layout. Because every backend (CPU in model.c, CUDA in
// Sources/TrainerCUDA) fills and reads exactly this layout, a checkpoint or a DiLoCo
// pseudo-gradient means the same thing wherever it was computed.
#ifndef STRATUM_TRAINER_MODEL_LAYOUT_H
#define STRATUM_TRAINER_MODEL_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TC_P_WTE, TC_P_WPE, TC_P_LN1W, TC_P_LN1B, TC_P_QKVW, TC_P_QKVB, TC_P_ATTPROJW, TC_P_ATTPROJB, TC_P_LN2W,
       TC_P_LN2B, TC_P_FCW, TC_P_FCB, TC_P_FCPROJW, TC_P_FCPROJB, TC_P_LNFW, TC_P_LNFB, TC_P_COUNT };

/// Element count of each tensor for this shape; returns the total.
size_t tc_param_sizes(int n_layer, int n_embd, int context, size_t sizes[TC_P_COUNT]);
/// Fills params (laid out by sizes) with the seeded initialisation of a new model.
void tc_param_init(float *params, const size_t sizes[TC_P_COUNT], int n_layer, uint64_t seed);
/// 1 when AdamW's weight decay applies to tensor k (matrices and embeddings), else 0.
int tc_param_decays(int k);
/// Short name of tensor k ("wte", "qkvw", ...).
const char *tc_param_name(int k);

#ifdef __cplusplus
}
#endif
#endif
