"""Static CPU facts used by hardware.py: ISA feature spellings, emulation caps, microarchitecture tables."""

# Features that matter for training, normalised across x86 and Arm spellings.
_X86_FEATURES = {
    "sse4_2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "avx512f": "avx512f",
    "avx512_bf16": "avx512_bf16", "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni", "amx_tile": "amx_tile",
    "amx_bf16": "amx_bf16", "amx_int8": "amx_int8", "avx512_fp16": "avx512_fp16",
}
_ARM_FEATURES = {"asimd": "neon", "sve": "sve", "sve2": "sve2", "i8mm": "i8mm", "bf16": "bf16", "asimddp": "dotprod"}
FEATURES = tuple(dict.fromkeys(list(_X86_FEATURES.values()) + list(_ARM_FEATURES.values())))

# ISA ceilings for emulation, strongest first. Each names what oneDNN / ATen may use at most.
ISA_CAPS = {
    # "mkl": MKL_ENABLE_INSTRUCTIONS. torch's fp32 matmul goes to MKL, which ignores oneDNN's cap: without this an
    # "AVX2" machine still ran fp32 GEMMs with AVX-512 (356 GFLOP/s measured, the uncapped figure).
    "avx512_core_amx": {"onednn": "AVX512_CORE_AMX", "aten": "avx512", "mkl": "AVX512_E4",
                        "drop": ()},
    "avx512_core_bf16": {"onednn": "AVX512_CORE_BF16", "aten": "avx512", "mkl": "AVX512_E3",
                         "drop": ("amx_tile", "amx_bf16", "amx_int8")},
    "avx512": {"onednn": "AVX512_CORE", "aten": "avx512", "mkl": "AVX512",
               "drop": ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16")},
    "avx2": {"onednn": "AVX2", "aten": "avx2", "mkl": "AVX2",
             "drop": ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512f", "avx512_vnni",
                      "avx_vnni")},
}

# (vendor, family, model) -> microarchitecture; Intel family 6 and AMD by family/model range.
_INTEL_FAM6 = {
    0x3C: "haswell", 0x3F: "haswell", 0x45: "haswell", 0x46: "haswell", 0x3D: "broadwell", 0x47: "broadwell",
    0x4F: "broadwell", 0x56: "broadwell", 0x4E: "skylake", 0x5E: "skylake", 0x55: "skylake-sp",
    0x8E: "kabylake", 0x9E: "coffeelake", 0x66: "cannonlake", 0x6A: "icelake-sp", 0x6C: "icelake-sp",
    0x7D: "icelake", 0x7E: "icelake", 0x8C: "tigerlake", 0x8D: "tigerlake", 0x97: "alderlake", 0x9A: "alderlake",
    0xB7: "raptorlake", 0xBA: "raptorlake", 0xBF: "raptorlake", 0xAA: "meteorlake", 0xAC: "meteorlake",
    0x8F: "sapphirerapids", 0xCF: "emeraldrapids", 0xAD: "graniterapids", 0xAE: "graniterapids",
    0xAF: "sierraforest", 0xC5: "arrowlake", 0xC6: "arrowlake", 0xBD: "lunarlake",
}
_AMD = [  # (family, first model, last model, name)
    (0x17, 0x00, 0x2F, "zen"), (0x17, 0x30, 0xFF, "zen2"), (0x19, 0x00, 0x0F, "zen3"), (0x19, 0x10, 0x1F, "zen4"),
    (0x19, 0x20, 0x5F, "zen3"), (0x19, 0x60, 0xAF, "zen4"), (0x1A, 0x00, 0xFF, "zen5"),
]
_ARM_PARTS = {  # (implementer, part) -> name
    (0x41, 0xD0C): "neoverse-n1", (0x41, 0xD40): "neoverse-v1", (0x41, 0xD49): "neoverse-n2",
    (0x41, 0xD4F): "neoverse-v2", (0x41, 0xD8E): "neoverse-n3", (0x41, 0xD84): "neoverse-v3",
    (0x41, 0xD0B): "cortex-a76", (0x41, 0xD08): "cortex-a72", (0x41, 0xD03): "cortex-a53",
    (0xC0, 0xAC3): "ampere-one", (0x61, 0x022): "apple-m1", (0x61, 0x032): "apple-m2",
}
