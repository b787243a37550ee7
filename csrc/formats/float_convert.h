// Scalar conversions between IEEE half, bfloat16 and float.
//
// half -> float is exact (every half is a float). float -> half rounds to nearest even, like the
// hardware instruction. With F16C we use the instruction; otherwise a bit-exact portable path.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace edgellama {

inline float bits_to_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline uint32_t float_to_bits(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}

inline float fp16_to_fp32_portable(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
    if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return bits_to_float(sign);  // signed zero
    // Subnormal half: normalize the mantissa; the result is a normal float.
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return bits_to_float(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

inline uint16_t fp32_to_fp16_portable(float f) {
    const uint32_t x = float_to_bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u | ((abs >> 13) & 0x3ffu);  // quiet nan
    if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504: inf
    if (abs >= 0x38800000u) {
        // Normal half: rebias, then round the 13 dropped bits to nearest even. A mantissa carry
        // correctly bumps the exponent.
        const uint32_t rebased = abs - (112u << 23);
        const uint32_t round = 0xfffu + ((rebased >> 13) & 1u);
        return sign | static_cast<uint16_t>((rebased + round) >> 13);
    }
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal: zero
    // Subnormal half: value = mant * 2^-24 with the implicit bit restored, rounded to even.
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24 for exp in 102..112
    const uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    const uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
    return sign | static_cast<uint16_t>(q + up);
}

inline float fp16_to_fp32(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return fp16_to_fp32_portable(h);
#endif
}

inline uint16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
    return fp32_to_fp16_portable(f);
#endif
}

// bfloat16 is the top half of a float: widening is a shift and always exact.
inline float bf16_to_fp32(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

}  // namespace edgellama
