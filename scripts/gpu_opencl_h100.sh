python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
# Dozen's OpenCL backend on an NVIDIA GPU (H100): a correctness check against numpy, then
# the fp32 GEMM 4096^3 against cuBLAS SGEMM (torch.matmul, TF32 off) in the same process.
# Run from the repository root: `bash scripts/gpu_opencl_h100.sh [--quick]`; takes 1-3 minutes.
# Needs python3 with numpy and torch (CUDA); pyopencl and its pure-Python dependencies come
# from the wheels in .whl/ (pyopencl, pytools, platformdirs, siphash24, typing_extensions).
set -eo pipefail
mkdir -p /etc/OpenCL/vendors && echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd
export DOZEN_DEVICE="${DOZEN_DEVICE:-NVIDIA}"
export PYTHONPATH=".:${PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader || true
python3 scripts/gpu_opencl_h100.py "$@"
