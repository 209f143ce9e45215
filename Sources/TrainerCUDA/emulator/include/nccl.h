// Emulator stand-in for <nccl.h>.
#pragma once
#include "emu.h"
