"""Numba CPU and CUDA kernels: blending, MIP, affine/oblique resampling."""
