// Emulator stand-in for <cublas_v2.h>.
#pragma once
#include "emu.h"
