#pragma once
#include "cuda/ops.cuh"
