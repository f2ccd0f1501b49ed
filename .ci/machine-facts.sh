#!/usr/bin/env bash
# Print the machine facts that change floating-point results, so that a red CI run can be read:
# CPU model and instruction-set flags, thread settings, and (once installed) torch's build and BLAS.
echo "== machine facts (numerics) =="
echo "date: $(date -u +%FT%TZ)  kernel: $(uname -srm)  nproc: $(nproc)"
if [ -r /proc/cpuinfo ]; then
  grep -m1 'model name' /proc/cpuinfo | sed 's/^/cpu: /'
  grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|avx512[a-z_]*|fma|f16c|amx[a-z_]*|sse4_2)$' \
    | tr '\n' ' ' | sed 's/^/simd flags: /'; echo
fi
for v in OMP_NUM_THREADS MKL_NUM_THREADS OPENBLAS_NUM_THREADS PYTORCH_NUM_THREADS; do
  echo "$v=${!v-<unset>}"
done
if command -v python >/dev/null && python -c 'import torch' 2>/dev/null; then
  python - <<'PY'
import torch
print(f"torch {torch.__version__}; threads {torch.get_num_threads()} intra / {torch.get_num_interop_threads()} "
      f"inter; cpu capability {torch.backends.cpu.get_cpu_capability()}")
print(f"mkl {torch.backends.mkl.is_available()}; mkldnn {torch.backends.mkldnn.is_available()}; "
      f"openmp {torch.backends.openmp.is_available()}")
import re
build = torch.__config__.show()
keep = ("BLAS_INFO", "LAPACK_INFO", "USE_MKL", "USE_MKLDNN", "USE_OPENMP", "PERF_WITH_AVX512")
print("build: " + ", ".join(m.group(0) for m in re.finditer(r"(\w+)=([^,\s]*)", build) if m.group(1) in keep))
PY
fi
echo "== end of machine facts =="
