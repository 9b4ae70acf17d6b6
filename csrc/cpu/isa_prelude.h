// Everything the CPU kernel headers include, other than at::vec itself, included BEFORE an isa_*.cpp
// switches the compiler target. Include guards then keep these (non-namespaced) inline functions compiled
// for baseline x86-64, so the linker can never pick an AVX-512 copy of, say, c10::BFloat16 conversion for
// code that runs on an older CPU. Only code inside the CPU_CAPABILITY namespaces gets the wider target.
// (sleef.h is deliberately NOT here: it declares its AVX functions only when the target has AVX, and it
// holds declarations only, so it is safe to include after the switch.)
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <tuple>
#include <type_traits>

#include <ATen/NumericUtils.h>
#include <ATen/native/Math.h>
#include <ATen/native/cpu/zmath.h>
#include <ATen/native/quantized/AffineQuantizerBase.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16-math.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <c10/util/Load.h>
#include <c10/util/MathConstants.h>
#include <c10/util/TypeCast.h>
#include <c10/util/complex.h>
#include <c10/util/copysign.h>
#include <c10/util/irange.h>
#include <c10/util/qint32.h>
#include <c10/util/qint8.h>
#include <c10/util/quint8.h>
#include <torch/headeronly/util/Exception.h>

#include "../activation.h"
#include "../params.h"
#include "isa.h"
